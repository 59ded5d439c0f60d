"""`evaluate_k`'s aggregates (mean accuracy, pass@k, first sample, greedy) against counts made by hand."""

import torch
from toy_task import make

from rlino.evaluate import evaluate_k
from rlino.rollout import sample


def test_evaluate_k_counts_by_hand(tiny):
    """Sample j of item i is row j·N + i; each sample drawn alone and scored by the toy rule, then counted by hand."""
    model, tok = tiny
    task = make(size=6, rule="ascii")
    items = task.items("test")
    n, k = len(items), 4
    kw = dict(seed=2, temperature=0.7, top_p=1.0, max_new_tokens=8)
    out = evaluate_k(model, tok, task, items, k=k, batch_size=5, **kw)
    from rlino.evaluate import EVAL_STEP

    ok = torch.zeros(k, n, dtype=torch.bool)
    for j in range(k):
        for i, it in enumerate(items):
            text = sample(model, tok, [it.prompt], [j * n + i], step=EVAL_STEP, batch_size=1, **kw).texts[0]
            ok[j, i] = text[:1].isascii() and text != ""
    greedy = [sample(model, tok, [it.prompt], [i], seed=2, step=EVAL_STEP, temperature=0.0, top_p=1.0,
                     max_new_tokens=8).texts[0] for i, it in enumerate(items)]
    assert (ok.any(dim=0) != ok.all(dim=0)).any()  # some item is solved by some samples only: any ≠ all
    assert out["sampled_accuracy"] == int(ok.sum()) / (k * n)
    assert out[f"pass@{k}"] == int(ok.any(dim=0).sum()) / n
    assert out["first_sample_accuracy"] == int(ok[0].sum()) / n
    assert out["greedy_accuracy"] == sum(g[:1].isascii() and g != "" for g in greedy) / n
    assert out["num_items"] == n and out["k"] == k
