"""TensorBatchStream: every example once per epoch, reproducible order, exact resume."""

from __future__ import annotations

import pytest
import torch

from twcore.contract.batch import Batch
from twcore.contract.stream import TensorBatchStream


def _data(n: int = 10) -> Batch:
    return Batch(inputs=torch.arange(n).float().unsqueeze(1), targets={"y": torch.arange(n)})


def test_an_epoch_visits_every_full_batch_example_once_and_drops_the_rest():
    stream = TensorBatchStream(_data(10), 3, seed=0)
    seen = torch.cat([next(stream).targets["y"] for _ in range(3)])
    assert len(set(seen.tolist())) == 9
    assert stream.completed_epochs == 1


def test_order_depends_on_seed_and_epoch_only():
    a = TensorBatchStream(_data(), 5, seed=1)
    b = TensorBatchStream(_data(), 5, seed=1)
    c = TensorBatchStream(_data(), 5, seed=2)
    first = [next(a).targets["y"].tolist() for _ in range(4)]
    assert first == [next(b).targets["y"].tolist() for _ in range(4)]
    assert first != [next(c).targets["y"].tolist() for _ in range(4)]
    assert sorted(first[0] + first[1]) == sorted(first[2] + first[3])  # two epochs
    assert first[:2] != first[2:]  # reshuffled


def test_state_round_trip_continues_with_the_same_batches():
    stream = TensorBatchStream(_data(), 3, seed=0)
    for _ in range(4):
        next(stream)
    state = stream.state_dict()
    expected = [next(stream).targets["y"].tolist() for _ in range(5)]
    other = TensorBatchStream(_data(), 3, seed=0)
    other.load_state_dict(state)
    assert [next(other).targets["y"].tolist() for _ in range(5)] == expected


def test_batch_larger_than_the_split_uses_the_whole_split():
    stream = TensorBatchStream(_data(4), 100, seed=0)
    assert len(next(stream)) == 4


def test_invalid_streams_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        TensorBatchStream(_data(), 0, seed=0)
    with pytest.raises(ValueError, match="empty"):
        TensorBatchStream(_data(0), 2, seed=0)


def test_batch_validate_catches_ragged_tensors():
    with pytest.raises(ValueError, match=r"targets\['y'\] has 3 rows, inputs have 2"):
        Batch(torch.zeros(2, 1), {"y": torch.zeros(3)}).validate()
