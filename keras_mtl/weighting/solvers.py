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


def regularize_gram(gram, norm_eps=1e-4, reg_eps=1e-4):
    """TorchJD's regularised Gram matrix `G / tr(G) + reg_eps I`.

    Dividing by the trace (the squared Frobenius norm of the gradients)
    makes the result independent of the scale of the gradients; adding
    `reg_eps I` makes it positive definite when the gradients are linearly
    dependent (or the Gram matrix is rounded to a slightly indefinite one).
    When the trace is below `norm_eps` (all gradients about zero), the
    result is `reg_eps I`. Rows and columns of absent tasks (zero in `gram`)
    become `reg_eps` on the diagonal: decoupled from the present tasks.

    Args:
        gram: `(T, T)` float tensor, a Gram matrix.
        norm_eps: float. Traces below it count as zero. Defaults to `1e-4`.
        reg_eps: float. Added to the diagonal. Defaults to `1e-4`.

    Returns:
        The `(T, T)` regularised matrix, in the dtype of `gram`.

    References:
        - [Quinton & Rey, 2024](https://arxiv.org/abs/2406.16232); TorchJD's
          `_linalg/_gramian.py` (`normalize`, `regularize`).
    """
    trace = tf.linalg.trace(gram)
    safe = tf.where(trace < norm_eps, tf.ones_like(trace), trace)
    normalized = tf.where(trace < norm_eps, tf.zeros_like(gram), gram / safe)
    size = gram.shape[0]
    return normalized + reg_eps * tf.eye(size, dtype=gram.dtype)


def box_qp(gram, lower, present=None, max_iterations=None, tolerance=1e-10):
    """Solves `min_v v^T G v  s.t. v >= u` exactly, by an active set.

    The Lawson-Hanson NNLS method on `x = v - u >= 0`, written on the Gram
    matrix: `min_x x^T G x + 2 x^T G u`. Each iteration frees the bound
    with the most negative gradient `(G v)_j` (when the previous solve was
    feasible), solves the equality problem on the free coordinates, and,
    if that solution leaves the box, steps back to the first bound it
    crosses and fixes it again. The inverse of the free block of `G` is
    kept and updated by one rank-one term per freed or fixed coordinate
    (bordering and its inverse), so an iteration costs `O(T^2)` per
    problem instead of a factorisation (XLA's batched Cholesky on a CPU
    took 28 ms at T = 40, an iteration of this 0.1 ms). Shapes are static
    (masks select the free coordinates), so it compiles with XLA.

    A coordinate whose Schur complement is not positive (to `tolerance`;
    only possible when `G` is singular, e.g. `reg_eps = 0` with linearly
    dependent gradients) is not freed: the solve stops at the last
    well-posed free set.

    The loop stops when no bound has a negative gradient (to `tolerance`,
    relative to the largest `|G u|`), or after `max_iterations`: the
    result is feasible either way. Lawson-Hanson terminates after finitely
    many steps; scipy's `nnls` allows `3 n`. On random, near-parallel and
    ill-conditioned Gram matrices of 2 to 40 tasks, UPGrad's and DualProj's
    problems took at most `T + 1` iterations.

    Args:
        gram: `(T, T)` float tensor, symmetric and positive definite on the
            present coordinates (see `regularize_gram`).
        lower: `(T,)` or `(K, T)` float tensor `u`: one bound per row, K
            problems with the same `G` solved at once.
        present: `(T,)` bool tensor or `None`. Coordinates not present are
            0 in the result and play no part: their bound is taken as 0
            and their rows and columns of `gram` are ignored. Defaults to
            `None` (all).
        max_iterations: int or `None`. Defaults to `None`: `3 T + 5`.
        tolerance: float. Relative optimality tolerance of the gradient.
            Defaults to `1e-10` (meant for float64).

    Returns:
        The solution `v`, of the shape and dtype of `lower`.

    Example:

    ```python
    gram = tf.constant([[1.0, -1.0], [-1.0, 2.0]], "float64")
    keras_mtl.weighting.solvers.box_qp(
        gram, tf.constant([0.5, 0.0], "float64"))  # [0.5, 0.25]
    ```

    References:
        - [Lawson & Hanson, 1974](https://doi.org/10.1137/1.9781611971217),
          Solving Least Squares Problems, chapter 23.
        - [Quinton & Rey, 2024](https://arxiv.org/abs/2406.16232),
          Proposition 1: the projection onto the dual cone as this QP.
    """
    single = len(lower.shape) == 1
    lower = lower[None, :] if single else lower
    size = gram.shape[0]
    dtype = lower.dtype
    gram = tf.cast(gram, dtype)
    if max_iterations is None:
        max_iterations = 3 * size + 5
    if present is None:
        present = tf.ones((size,), "bool")
    present = tf.broadcast_to(present[None, :], tf.shape(lower))
    lower = tf.where(present, lower, tf.zeros_like(lower))
    linear = tf.matmul(lower, gram)
    diagonal = tf.linalg.diag_part(gram)
    scale = tf.maximum(
        tf.reduce_max(tf.abs(linear)), tf.reduce_max(tf.abs(diagonal))
    )
    threshold = tolerance * scale
    infinity = tf.constant(float("inf"), dtype)
    zero = tf.zeros_like(lower)

    def step(iteration, x, free, inverse, grow, done):
        # Free the bound with the most negative gradient of v^T G v.
        descent = -(tf.matmul(x, gram) + linear)
        candidates = tf.logical_and(present, tf.logical_not(free))
        masked = tf.where(candidates, descent, -infinity)
        best = tf.argmax(masked, axis=1, output_type=tf.int32)
        chosen = tf.one_hot(best, size, dtype=dtype)
        column = tf.matmul(chosen, gram)  # G[:, j]
        # Bordering the inverse of the free block with j: its Schur
        # complement G_jj - G_jP (G_PP)^-1 G_Pj must be positive.
        product = tf.linalg.matvec(inverse, column)
        schur = tf.reduce_sum(chosen * column, 1) - tf.reduce_sum(
            column * product, 1
        )
        optimal = tf.logical_or(
            tf.logical_not(tf.reduce_max(masked, axis=1) > threshold),
            tf.logical_not(schur > tolerance * scale),
        )
        done = tf.logical_or(done, tf.logical_and(grow, optimal))
        add = tf.logical_and(grow, tf.logical_not(done))
        border = product - chosen
        safe = tf.where(add, schur, tf.ones_like(schur))
        inverse = inverse + tf.where(
            add[:, None, None],
            border[:, :, None] * border[:, None, :] / safe[:, None, None],
            0.0,
        )
        free = tf.logical_or(free, tf.logical_and(add[:, None], chosen > 0))
        solution = -tf.linalg.matvec(inverse, linear)
        solution = tf.where(free, solution, zero)
        inside = tf.reduce_all(
            tf.logical_or(tf.logical_not(free), solution > 0.0), axis=1
        )
        # Otherwise step from x towards the solution up to the first bound
        # it crosses, and fix that coordinate at its bound again.
        leaving = tf.logical_and(free, solution <= 0.0)
        gap = x - solution
        moving = tf.logical_and(leaving, gap > 0.0)
        ratio = tf.where(moving, x / tf.where(moving, gap, 1.0), 0.0)
        ratio = tf.where(leaving, ratio, infinity)
        blocking = tf.argmin(ratio, axis=1, output_type=tf.int32)
        alpha = tf.reduce_min(ratio, axis=1, keepdims=True)
        alpha = tf.where(tf.math.is_finite(alpha), alpha, tf.zeros_like(alpha))
        fixed = tf.one_hot(blocking, size, dtype=dtype)
        partial = tf.maximum(x + alpha * (solution - x), 0.0) * (1.0 - fixed)
        remove = tf.logical_and(tf.logical_not(inside), tf.logical_not(done))
        row = tf.linalg.matvec(inverse, fixed)
        pivot = tf.reduce_sum(row * fixed, 1)
        safe = tf.where(remove, pivot, tf.ones_like(pivot))
        inverse = inverse - tf.where(
            remove[:, None, None],
            row[:, :, None] * row[:, None, :] / safe[:, None, None],
            0.0,
        )
        keep = done[:, None]
        new_x = tf.where(inside[:, None], solution, partial)
        new_free = tf.logical_and(
            free, tf.logical_not(tf.logical_and(remove[:, None], fixed > 0))
        )
        return (
            iteration + 1,
            tf.where(keep, x, new_x),
            tf.where(keep, free, new_free),
            inverse,
            tf.logical_or(inside, done),
            done,
        )

    batch = tf.shape(lower)[0]
    _, x, _, _, _, _ = tf.while_loop(
        lambda i, x, free, inverse, grow, done: tf.logical_and(
            i < max_iterations, tf.logical_not(tf.reduce_all(done))
        ),
        step,
        (
            tf.constant(0),
            zero,
            tf.zeros_like(lower, dtype="bool"),
            tf.zeros((batch, size, size), dtype),
            tf.ones((batch,), "bool"),
            tf.zeros((batch,), "bool"),
        ),
    )
    solution = tf.where(present, lower + x, zero)
    return solution[0] if single else solution


def project_to_dual_cone(
    gram, lower, present=None, norm_eps=1e-4, reg_eps=1e-4, max_iterations=None
):
    """Weights of the projection of `J^T u` onto the dual cone of the rows.

    With `G = J J^T`, the projection of `sum_i u_i g_i` onto the cone of
    directions that conflict with no `g_i` is `sum_i v_i g_i`, with `v` the
    solution of `min_v v^T G v  s.t. v >= u` (Quinton & Rey, 2024,
    Proposition 1). As TorchJD does, `G` is first regularised to
    `G / tr(G) + reg_eps I` (see `regularize_gram`), and the QP is solved
    in float64 by `box_qp`.

    Args:
        gram: `(T, T)` float tensor `J J^T`; rows and columns of absent
            tasks are zero.
        lower: `(T,)` or `(K, T)` float tensor `u`.
        present: `(T,)` bool tensor or `None`: the others get 0. Defaults
            to `None` (all).
        norm_eps: float. Defaults to `1e-4`.
        reg_eps: float. Defaults to `1e-4`.
        max_iterations: int or `None`. See `box_qp`.

    Returns:
        `v`, of the shape of `lower`, in the dtype of `gram`.
    """
    dtype = gram.dtype
    gram = regularize_gram(tf.cast(gram, "float64"), norm_eps, reg_eps)
    solution = box_qp(gram, tf.cast(lower, "float64"), present, max_iterations)
    return tf.cast(solution, dtype)


def solve_power_equation(matrix, power=1.0, max_iterations=20, searches=12):
    """The `w > 0` with `matrix @ w = w^(-power)`, by Newton steps.

    `w` is the minimiser of the strictly convex
    `0.5 w^T M w - sum_i log w_i` (`power = 1`, Nash-MTL's bargaining
    equation) or `0.5 w^T M w + sum_i w_i^(1 - p) / (p - 1)` (FairGrad's
    `p = 1 / alpha`). With `power = 1` the function is self-concordant, and
    the damped Newton step `-H^-1 g / (1 + lambda)` (`lambda` the Newton
    decrement) stays positive and converges. Otherwise it is not, so each
    full Newton step is cut to stay inside `w > 0` (at most 0.99 of the
    way to the boundary) and then shortened by `searches` bisections to
    where the objective stops decreasing along it (its derivative along the
    step changes sign; the objective values themselves cancel in float32).
    Starts at the solution for a diagonal `M`, `w_i = M_ii^(-1/(1+p))`.

    Args:
        matrix: `(T, T)` symmetric positive definite float tensor, of
            entries of order 1 (normalise a Gram matrix first, see
            `stable_norm`; add a ridge where it may be singular).
        power: float > 0. `p`. Defaults to `1.0`.
        max_iterations: int. Newton steps. Defaults to `20`.
        searches: int. Bisections of each step for `power != 1`. Defaults
            to `12`.

    Returns:
        The `(T,)` positive solution.

    References:
        - [Navon et al., 2022](https://arxiv.org/abs/2202.01017), the
          bargaining equation.
        - [Ban & Ji, 2024](https://arxiv.org/abs/2402.15638), FairGrad.
        - [Boyd & Vandenberghe, 2004](https://web.stanford.edu/~boyd/cvxbook/),
          §9.6, damped Newton on self-concordant functions.
    """
    diagonal = tf.maximum(tf.linalg.diag_part(matrix), 1e-20)
    if power == 1.0:
        start = 1.0 / tf.sqrt(diagonal)

        def step_fn(iteration, w):
            gradient = tf.linalg.matvec(matrix, w) - 1.0 / w
            hessian = matrix + tf.linalg.diag(1.0 / (w * w))
            newton, _ = solve(hessian, gradient, rcond=0.0)
            decrement = tf.sqrt(
                tf.maximum(tf.tensordot(gradient, newton, 1), 0.0)
            )
            return iteration + 1, w - newton / (1.0 + decrement)

    else:
        start = tf.pow(diagonal, -1.0 / (1.0 + power))

        def step_fn(iteration, w):
            def slope(t):  # of the objective along -newton, at w - t newton
                moved = w - t * newton
                gradient = tf.linalg.matvec(matrix, moved) - moved**-power
                return -tf.tensordot(gradient, newton, 1)

            def bisect(k, low, high):
                middle = 0.5 * (low + high)
                below = slope(middle) <= 0.0
                return (
                    k + 1,
                    tf.where(below, middle, low),
                    tf.where(below, high, middle),
                )

            gradient = tf.linalg.matvec(matrix, w) - w**-power
            hessian = matrix + tf.linalg.diag(power * w ** (-power - 1.0))
            newton, _ = solve(hessian, gradient, rcond=0.0)
            room = tf.where(newton > 0.0, w / tf.maximum(newton, 1e-30), 1e30)
            longest = tf.minimum(1.0, 0.99 * tf.reduce_min(room))
            _, low, high = tf.while_loop(
                lambda k, low, high: k < searches,
                bisect,
                (tf.constant(0), tf.zeros_like(longest), longest),
            )
            length = tf.where(slope(longest) <= 0.0, longest, low)
            length = tf.where(length > 0.0, length, high)
            return iteration + 1, w - length * newton

    _, w = tf.while_loop(
        lambda i, w: i < max_iterations,
        step_fn,
        (tf.constant(0), start),
    )
    return w
