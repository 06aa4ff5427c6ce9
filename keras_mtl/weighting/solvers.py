"""Small solvers on Gram matrices, in TensorFlow so they run in the graph.

Shared by the gradient-level weighting methods. Each works on the `(T, T)`
Gram matrix of the task gradients and keeps static shapes, so it also
compiles with XLA. A value picked at a computed index goes through
`tf.gather`: XLA's strided slice needs its bounds at compile time, which
would make the Gram matrix a compile-time constant, compiled anew for every
step.
"""

import tensorflow as tf


def solve(matrix, vector, rcond=1e-6):
    """Solves `matrix @ x = vector` by QR, without raising when singular.

    Returns:
        `(x, ok)`: the solution and a boolean scalar, false when the matrix
        is singular to `rcond` (relative to its largest pivot) or the
        solution is not finite.
    """
    q, r = tf.linalg.qr(matrix)
    pivots = tf.abs(tf.linalg.diag_part(r))
    solution = tf.linalg.triangular_solve(
        r, tf.matmul(q, vector[:, None], transpose_a=True), lower=False
    )[:, 0]
    ok = tf.logical_and(
        tf.reduce_min(pivots) > rcond * tf.reduce_max(pivots),
        tf.reduce_all(tf.math.is_finite(solution)),
    )
    return solution, ok


def stable_norm(tensor):
    """The Euclidean norm of all the entries, without squaring them raw.

    `m sqrt(sum((x / m)^2))` with `m = max |x|`: the squares of entries
    beyond about 1e19 overflow float32 and those below about 1e-19
    underflow, so `tf.norm` of a Gram matrix of scale 1e30 is `inf` and of
    scale 1e-30 is 0. An all-zero tensor has norm 0.

    Args:
        tensor: float tensor of any shape.

    Returns:
        The float scalar `||x||_2` (Frobenius for a matrix).
    """
    largest = tf.reduce_max(tf.abs(tensor))
    safe = tf.where(largest > 0.0, largest, tf.ones_like(largest))
    return largest * tf.sqrt(tf.reduce_sum(tf.square(tensor / safe)))


def project_to_simplex(vector, present=None):
    """Euclidean projection of a `(T,)` vector onto the probability simplex.

    Args:
        vector: `(T,)` float tensor.
        present: `(T,)` bool tensor or `None`. The simplex of these
            coordinates only: the others are 0. Defaults to `None` (all).

    Returns:
        The `(T,)` point of the simplex nearest to `vector`.

    References:
        - [Duchi et al., 2008](https://doi.org/10.1145/1390156.1390191)
    """
    size = vector.shape[0]
    masked = vector
    if present is not None:
        # Absent coordinates sort last, below every present one.
        lowest = tf.reduce_min(vector) - 1e6 - tf.reduce_max(tf.abs(vector))
        masked = tf.where(present, vector, lowest)
    ordered = tf.sort(masked, direction="DESCENDING")
    cumulative = tf.cumsum(ordered) - 1.0
    index = tf.range(1, size + 1, dtype=vector.dtype)
    active = ordered - cumulative / index > 0
    if present is not None:
        count_present = tf.reduce_sum(tf.cast(present, tf.int32))
        active = tf.logical_and(active, tf.range(size) < count_present)
    count = tf.maximum(tf.reduce_sum(tf.cast(active, tf.int32)), 1)
    threshold = tf.gather(cumulative, count - 1) / tf.cast(count, vector.dtype)
    projected = tf.maximum(vector - threshold, 0.0)
    if present is not None:
        projected = tf.where(present, projected, 0.0)
    return projected


def min_norm_two(gram):
    """Weights `(a, 1 - a)` minimising `||a g_1 + (1 - a) g_2||^2`.

    The closed form of Sener & Koltun (2018):
    `a = clip((g_2 - g_1) . g_2 / ||g_1 - g_2||^2, 0, 1)`, and `a = 0.5`
    when the two gradients are equal.
    """
    denominator = gram[0, 0] - 2.0 * gram[0, 1] + gram[1, 1]
    safe = tf.where(denominator > 1e-20, denominator, 1.0)
    alpha = tf.clip_by_value((gram[1, 1] - gram[0, 1]) / safe, 0.0, 1.0)
    alpha = tf.where(denominator > 1e-20, alpha, 0.5)
    return tf.stack([alpha, 1.0 - alpha])


def min_norm_frank_wolfe(
    gram, max_iterations=250, tolerance=1e-5, present=None
):
    """Minimum-norm point of the convex hull of the gradients.

    As in Sener & Koltun (2018): start from the best two-task solution over
    all pairs, then Frank-Wolfe on the simplex with exact line search, each
    step moving towards the vertex `e_t` with the least `(G G^T w)_t`. Stops
    when the weights change by less than `tolerance` (L1) or after
    `max_iterations` steps.

    Args:
        gram: `(T, T)` Gram matrix.
        max_iterations: int. Defaults to `250`.
        tolerance: float. Defaults to `1e-5`.
        present: `(T,)` bool tensor or `None`. The simplex of these tasks
            only (at least two): the others get weight 0. Defaults to
            `None` (all).

    Returns:
        `(T,)` weights on the simplex.
    """
    size = gram.shape[0]
    diagonal = tf.linalg.diag_part(gram)
    rows, columns = diagonal[:, None], diagonal[None, :]
    denominator = rows - 2.0 * gram + columns
    safe = tf.where(denominator > 1e-20, denominator, 1.0)
    share = tf.clip_by_value((columns - gram) / safe, 0.0, 1.0)
    share = tf.where(denominator > 1e-20, share, 1.0)
    value = (
        share**2 * rows
        + 2.0 * share * (1.0 - share) * gram
        + (1.0 - share) ** 2 * columns
    )
    if present is not None:
        pair = tf.logical_and(present[:, None], present[None, :])
        value = tf.where(pair, value, float("inf"))
    best = tf.argmin(tf.reshape(value, (-1,)), output_type=tf.int32)
    first, second = best // size, best % size
    pair_share = tf.gather(tf.reshape(share, (-1,)), best)
    start = pair_share * tf.one_hot(first, size) + (
        1.0 - pair_share
    ) * tf.one_hot(second, size)

    def step(iteration, weights, change):
        product = tf.linalg.matvec(gram, weights)
        candidates = product
        if present is not None:
            candidates = tf.where(present, product, float("inf"))
        vertex = tf.argmin(candidates, output_type=tf.int32)
        ww = tf.tensordot(weights, product, 1)
        wt = tf.gather(product, vertex)
        tt = tf.gather(diagonal, vertex)
        denominator = ww - 2.0 * wt + tt
        safe = tf.where(denominator > 1e-20, denominator, 1.0)
        gamma = tf.clip_by_value((ww - wt) / safe, 0.0, 1.0)
        gamma = tf.where(denominator > 1e-20, gamma, 0.0)
        updated = (1.0 - gamma) * weights + gamma * tf.one_hot(vertex, size)
        return iteration + 1, updated, tf.reduce_sum(tf.abs(updated - weights))

    _, weights, _ = tf.while_loop(
        lambda i, w, change: tf.logical_and(
            i < max_iterations, change >= tolerance
        ),
        step,
        (tf.constant(0), start, tf.constant(1.0)),
    )
    return weights


def minimize_on_simplex(
    value_and_gradient, start, max_iterations=200, present=None
):
    """Projected gradient descent on the simplex, with backtracking.

    A step is taken only if it decreases the objective by the sufficient
    decrease condition; otherwise the step size is halved. Accepted steps
    grow the step size by 1.5, up to 1e3: at a vertex optimum every step is
    accepted, and an unbounded step size would lose the weights to rounding
    (float32 keeps 7 digits) and leave the simplex.

    Args:
        value_and_gradient: callable `w -> (value, gradient)`.
        start: `(T,)` starting point on the simplex.
        max_iterations: int. Defaults to `200`.
        present: `(T,)` bool tensor or `None`. The simplex of these
            coordinates only. Defaults to `None` (all).

    Returns:
        `(T,)` weights on the simplex.
    """
    value, _ = value_and_gradient(start)

    def step(iteration, weights, value, size):
        _, gradient = value_and_gradient(weights)
        candidate = project_to_simplex(weights - size * gradient, present)
        new_value, _ = value_and_gradient(candidate)
        move = candidate - weights
        bound = (
            value
            + tf.tensordot(gradient, move, 1)
            + tf.reduce_sum(move * move) / (2.0 * size)
        )
        accept = new_value <= bound
        return (
            iteration + 1,
            tf.where(accept, candidate, weights),
            tf.where(accept, new_value, value),
            tf.where(accept, tf.minimum(size * 1.5, 1e3), size * 0.5),
        )

    _, weights, _, _ = tf.while_loop(
        lambda i, w, v, s: i < max_iterations,
        step,
        (tf.constant(0), start, value, tf.constant(1.0, start.dtype)),
    )
    return weights
