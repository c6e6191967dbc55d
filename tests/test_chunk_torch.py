"""Chunk (x.chunk(n, dim)[i]) and FloorDiv against torch: every piece of torch.chunk, sizes that do
not divide (the last piece shorter, fewer pieces than asked), on quantized values."""
import numpy as np
import pytest

import fastq
from fastq.layers.shape import Chunk, FloorDiv

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("size,chunks", [(6, 2), (7, 3), (5, 4), (1, 1), (10, 3), (4, 8)])
def test_chunk_pieces_match_torch(rng, size, chunks):
    x = rng.integers(0, 256, (2, size, 3)).astype(np.uint8)
    xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.1, 7)
    pieces = xt.chunk(chunks, 1)
    for i in range(chunks):
        layer = Chunk(chunks, 1, i)
        if i >= len(pieces):
            with pytest.raises(ValueError, match="no piece %d" % i):
                layer(fastq.QTensor(x, 0.1, 7))
            continue
        y = layer(fastq.QTensor(x, 0.1, 7))
        assert (y.scale, y.zero_point) == (0.1, 7)
        assert np.array_equal(y.values, pieces[i].int_repr().numpy())


def test_floordiv_and_bad_settings():
    assert FloorDiv(2)(116) == 58 and FloorDiv(3)(-7) == -3       # Python's floor division, as fx traces it
    with pytest.raises(ValueError, match="divisor"):
        FloorDiv(0)
    with pytest.raises(TypeError, match="x: expected an int"):
        FloorDiv(2)(2.5)
    with pytest.raises(ValueError, match="index"):
        Chunk(2, 1, 2)
    with pytest.raises(ValueError, match="chunks"):
        Chunk(0, 1, 0)
