import importlib.util
import pathlib

import pytest

RECIPES = pathlib.Path(__file__).resolve().parent.parent / "recipes"


def load_recipe(name):
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_multi_mnist_demo_small(tmp_path, capsys):
    demo = load_recipe("multi_mnist")
    model, logs = demo.main(
        [
            "--epochs",
            "2",
            "--num-train",
            "2000",
            "--num-test",
            "400",
            "--output-dir",
            str(tmp_path),
            "--verbose",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert "left" in out and "right" in out and "test accuracy %" in out
    assert (tmp_path / "multi_mnist.keras").exists()
    assert (tmp_path / "multi_mnist_curves.png").stat().st_size > 10000
    # Ten classes: chance is 10%.
    assert logs["left_accuracy"] > 0.3 and logs["right_accuracy"] > 0.3


@pytest.mark.slow
def test_multi_mnist_demo_full(tmp_path):
    demo = load_recipe("multi_mnist")
    _, logs = demo.main(["--output-dir", str(tmp_path), "--verbose", "0"])
    assert logs["left_accuracy"] > 0.9 and logs["right_accuracy"] > 0.88
