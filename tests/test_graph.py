"""fastq.from_torch on real torch models whose forward is not a chain of their children, converted
under each engine: outputs compared bit for bit (float32 patterns), inputs 4x past the
calibration range and on half-step grids."""
import warnings

import numpy as np
import pytest

import fastq

torch = pytest.importorskip("torch")
from torch_helpers import engine_fixture  # noqa: E402,F401  (the "engine" fixture)
from graph_models import FAMILIES, mismatches  # noqa: E402

warnings.filterwarnings("ignore", message=".*reduce_range.*")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_matches_torch_bitwise(engine, family):
    tm, xs = FAMILIES[family](engine)
    model = fastq.from_torch(tm)
    bad, total = mismatches(tm, model, xs)
    assert total > 0 and bad == 0, "%s / %s: %d of %d differ" % (family, engine, bad, total)


def test_order_follows_forward_not_registration(engine):
    tm, xs = FAMILIES["order"](engine)
    model = fastq.from_torch(tm)
    assert [n.name for n in model.nodes] == ["quant", "a", "b", "dequant"]
    assert model.node("b").inputs == ("a",)


def test_module_called_twice_shares_one_layer(engine):
    tm, _ = FAMILIES["nested"](engine)
    model = fastq.from_torch(tm)
    fcs = [n for n in model.nodes if isinstance(n.layer, fastq.QuantizedLinear) and n.name.startswith("blocks_0")]
    assert len(fcs) == 2 and fcs[0].layer is fcs[1].layer and fcs[0].name != fcs[1].name


def test_residual_add_is_an_add_not_an_identity(engine):
    from fastq.layers.arith import QuantizedAdd
    for fam, relu in (("residual_unfused", False), ("residual_fused", True)):
        tm, _ = FAMILIES[fam](engine)
        adds = [n for n in fastq.from_torch(tm).nodes if isinstance(n.layer, QuantizedAdd)]
        assert len(adds) == 1 and adds[0].layer.relu is relu and len(adds[0].inputs) == 2
        assert adds[0].layer.arithmetic == ("qnnpack" if engine == "qnnpack" else "fbgemm")


def test_engine_argument_picks_the_arithmetic():
    from fastq.layers.arith import QuantizedAdd
    from torch_helpers import engine as pinned
    with pinned("qnnpack"):
        tm, xs = FAMILIES["residual_unfused"]("qnnpack")
        model = fastq.from_torch(tm, engine="qnnpack")
    assert [n.layer.arithmetic for n in model.nodes if isinstance(n.layer, QuantizedAdd)] == ["qnnpack"]
    with pinned("qnnpack"):
        assert mismatches(tm, model, xs)[0] == 0


def test_intermediate_values_are_freed(engine):
    """Only model outputs survive a run: each intermediate slot is dropped after its last reader."""
    tm, xs = FAMILIES["concat"](engine)
    model = fastq.from_torch(tm)
    vals = model._run(model._inputs((xs[1],)), keep_all=False)
    alive = [v for v, i in model._slots.items() if vals[i] is not None]
    assert alive == list(model.outputs)
    everything = model.run_values(xs[1])
    assert set(everything) == set(model._slots) and all(v is not None for v in everything.values())


def test_save_load_keeps_the_graph(tmp_path, engine):
    for fam in ("residual_fused", "concat", "tuple_out", "functional"):
        tm, xs = FAMILIES[fam](engine)
        model = fastq.from_torch(tm)
        path = str(tmp_path / (fam + ".npz"))
        model.save(path)
        loaded = fastq.load(path)
        assert [n.name for n in loaded.nodes] == [n.name for n in model.nodes]
        assert mismatches(tm, loaded, xs)[0] == 0


@pytest.mark.parametrize("family", ["residual_unfused", "residual_fused", "concat", "nested"])
def test_quantized_op_outputs_equal_torch_intermediates(engine, family):
    """Each QFunctional op's result (what its activation_post_process receives in torch) equals
    the fastq value of that node: integers and qparams, for batches whose sizes straddle the
    64-element vector block of torch's add loop."""
    tm, xs = FAMILIES[family](engine)
    model = fastq.from_torch(tm)
    seen = {}
    hooks = []
    for path, mod in tm.named_modules():
        if path.endswith("activation_post_process"):
            fx_name = path.replace(".", "_")
            hooks.append(mod.register_forward_hook(lambda m, i, o, k=fx_name: seen.setdefault(k, []).append(i[0])))
    try:
        compared = 0
        for x in xs:
            seen.clear()
            with torch.no_grad():
                tm(torch.from_numpy(x))
            values = model.run_values(x)
            for name, outs in seen.items():
                names = [name] + ["%s_%d" % (name, k) for k in range(1, len(outs))]
                for n, t in zip(names, outs):
                    q = values[n]
                    assert np.array_equal(q.values, t.int_repr().numpy()), (family, engine, n)
                    assert (q.scale, q.zero_point) == (t.q_scale(), t.q_zero_point())
                    compared += t.numel()
        assert compared > 0
    finally:
        for h in hooks:
            h.remove()


def test_cli_summary_of_a_saved_graph(tmp_path, capsys, engine):
    from fastq.tools.cli import main
    tm, _ = FAMILIES["concat"](engine)
    model = fastq.from_torch(tm)
    path = str(tmp_path / "concat.npz")
    model.save(path)
    assert main(["summary", path, "--shape", "3", "16"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(model.nodes) + 4 and "3x20 3x12  3x32" in [ln for ln in out if ln.startswith("cat ")][0]


class _TwoInputs(torch.nn.Module):
    """Two model inputs, each with its QuantStub, joined by QFunctional add and mul (two outputs)."""
    def __init__(self):
        super().__init__()
        import torch.ao.quantization as tq
        import torch.ao.nn.quantized as nnq
        self.qa, self.qb, self.d1, self.d2 = tq.QuantStub(), tq.QuantStub(), tq.DeQuantStub(), tq.DeQuantStub()
        self.add, self.mul = nnq.FloatFunctional(), nnq.FloatFunctional()

    def forward(self, a, b):
        a, b = self.qa(a), self.qb(b)
        return self.d1(self.add.add(a, b)), self.d2(self.mul.mul(a, b))


def test_two_input_model_with_near_tie_scales(engine):
    """Several graph inputs and outputs; input / output scales set to small ratios so that many
    sums land next to a rounding boundary: the whole model stays bitwise equal to torch, and the
    engine's other add formula would not (the check can fail)."""
    import torch.ao.quantization as tq
    from fastq.layers.arith import QuantizedAdd
    f32 = np.float32
    m = _TwoInputs().eval()
    m.qconfig = tq.get_default_qconfig(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = tq.prepare(m)
        p(torch.randn(8, 24), torch.randn(8, 24))
        tm = tq.convert(p)
    rng = np.random.default_rng(20)
    bad = other = 0
    for t in range(12):
        sa = float(f32(10 ** rng.uniform(-2, -1)))
        sb, s = float(f32(sa * rng.choice([1, 0.5, 2, 1.5]))), float(f32(sa * rng.choice([1, 2, 1.5, 3])))
        za, zb, z = (int(v) for v in rng.integers(1, 255, 3))
        tm.qa.scale, tm.qa.zero_point = torch.tensor([sa]), torch.tensor([za])
        tm.qb.scale, tm.qb.zero_point = torch.tensor([sb]), torch.tensor([zb])
        tm.add.scale, tm.add.zero_point = s, z
        tm.mul.scale, tm.mul.zero_point = float(f32(sa * sb * 8)), z
        model = fastq.from_torch(tm)
        change = {"arithmetic": "fbgemm"} if engine == "qnnpack" else {"vector_block": 0}
        nodes = []
        for n in model.nodes:
            layer = n.layer
            if isinstance(layer, QuantizedAdd):
                layer = QuantizedAdd(**dict(layer.get_settings(), **change))
            nodes.append(fastq.Node(n.name, layer, n.inputs, n.outputs))
        wrong = fastq.Model(nodes=nodes, inputs=model.inputs, outputs=model.outputs)
        for rows in (1, 7, 64):
            a = (rng.integers(0, 256, (rows, 24)) - za).astype(np.float32) * f32(sa)
            b = (rng.integers(0, 256, (rows, 24)) - zb).astype(np.float32) * f32(sb)
            with torch.no_grad():
                expected = [e.numpy() for e in tm(torch.from_numpy(a), torch.from_numpy(b))]
            for got_model, counter in ((model, "bad"), (wrong, "other")):
                got = got_model(a, b)
                n = sum(int(np.sum(g.view(np.uint32) != e.view(np.uint32))) for g, e in zip(got, expected))
                if counter == "bad":
                    bad += n
                else:
                    other += n
    assert model.inputs == ("a", "b") and len(model.outputs) == 2
    print("two-input model, %s: %d mismatches, %d with the other formula" % (engine, bad, other))
    assert bad == 0 and other > 0
