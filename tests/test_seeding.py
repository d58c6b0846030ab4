"""seeded_cpu_rng: the block's draws depend on the seed alone and the caller's random state does not move."""

from __future__ import annotations

import torch

from rsgen.seeding import seeded_cpu_rng


def test_block_draws_depend_on_the_seed_alone():
    torch.manual_seed(1)
    with seeded_cpu_rng(7):
        a = torch.rand(5)
    torch.manual_seed(2)
    with seeded_cpu_rng(7):
        b = torch.rand(5)
    with seeded_cpu_rng(8):
        c = torch.rand(5)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_caller_state_is_restored():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    with seeded_cpu_rng(0):
        torch.rand(100)
    assert torch.equal(torch.rand(4), expected)
