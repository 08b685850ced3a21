"""LoRA and fine-tuning: exactness of injection and merging, frozen base, small checkpoints."""

from __future__ import annotations

import pytest
import torch

from lemon_pl.adaptation.lora import LoRALinear, inject_lora, merge_lora
from lemon_pl.models import FNO, DeepONet, Prose
from lemon_pl.operators.finetune import FinetuneModule
from lemon_pl.operators.pretrain import PretrainModule
from lemon_pl.core.errors import CheckpointMismatchError
from lemon_pl.core.checkpointing import load_net_state

NX, NOUT = 16, 4


def nets():
    torch.manual_seed(0)
    return {
        "prose": Prose(nx=NX, output_len=NOUT, d_model=8, n_heads=2, dim_ffn=16, n_data_layers=1, n_symbol_layers=1,
                       n_fusion_layers=1, n_decoder_layers=1),
        "deeponet": DeepONet(nx=NX, output_len=NOUT, basis_dim=4, hidden=8),
        "fno": FNO(nx=NX, output_len=NOUT, modes=4, width=8, n_layers=2),
    }


def inputs(b=3):
    g = torch.Generator().manual_seed(2)
    toks = torch.randint(4, 70, (b, 6), generator=g)
    return (torch.randn(b, 1, NX, generator=g), torch.zeros(1), torch.linspace(0.1, 1.9, NOUT), toks, toks == 2)


def save_plain_checkpoint(net, path):
    torch.save({"state_dict": {"net." + k: v for k, v in net.state_dict().items()}, "hyper_parameters": {}}, path)


@pytest.mark.parametrize("name", ["prose", "deeponet", "fno"])
def test_injection_is_exact_and_merge_equals_unmerged(name):
    net = nets()[name]
    x = inputs()
    base_out = net(*x).detach()
    wrapped = inject_lora(net, rank=2, alpha=4.0)
    assert torch.allclose(net(*x), base_out, atol=0)  # B = 0: nothing changes at injection
    if name == "prose":  # every attention projection is adapted
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            assert any(w.endswith(proj) for w in wrapped), proj
    g = torch.Generator().manual_seed(4)
    for m in net.modules():
        if isinstance(m, LoRALinear):
            m.lora_b.data = torch.randn(m.lora_b.shape, generator=g) * 0.1
    unmerged = net(*x).detach()
    assert not torch.allclose(unmerged, base_out, atol=1e-4)
    n = merge_lora(net)
    assert n == len(wrapped) and not any(isinstance(m, LoRALinear) for m in net.modules())
    assert torch.allclose(net(*x), unmerged, atol=1e-5)


def test_lora_module_trains_only_adapters_with_alpha_over_rank(tmp_path):
    net = nets()["prose"]
    ckpt = tmp_path / "base.ckpt"
    save_plain_checkpoint(net, ckpt)
    m = FinetuneModule(nets()["prose"], init_from=str(ckpt), mode="lora", lora_rank=4, lora_alpha=8.0)
    lora = [mod for mod in m.net.modules() if isinstance(mod, LoRALinear)]
    assert lora and all(mod.scaling == 2.0 for mod in lora)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_a", "lora_b")) for n in trainable)
    total = sum(p.numel() for p in m.net.parameters())
    assert m.n_trainable < 0.5 * total


def test_decoder_mode_and_full_mode(tmp_path):
    m = FinetuneModule(nets()["prose"], mode="decoder")
    assert {n.split(".")[1] for n, p in m.named_parameters() if p.requires_grad} == {"decoder"}
    m = FinetuneModule(nets()["fno"], mode="decoder")
    assert {n.split(".")[1] for n, p in m.named_parameters() if p.requires_grad} == {"proj1", "proj2"}
    m = FinetuneModule(nets()["deeponet"], mode="full")
    assert all(p.requires_grad for p in m.parameters())


def test_init_from_loads_weights_and_refuses_other_models(tmp_path):
    src = nets()["prose"]
    for p in src.parameters():
        p.data.add_(0.5)
    ckpt = tmp_path / "src.ckpt"
    save_plain_checkpoint(src, ckpt)
    m = FinetuneModule(nets()["prose"], init_from=str(ckpt))
    for (n, a), b in zip(m.net.state_dict().items(), src.state_dict().values()):
        assert torch.equal(a, b), n
    other = Prose(nx=NX, output_len=NOUT, d_model=16, n_heads=2, dim_ffn=16, n_data_layers=1, n_symbol_layers=1,
                  n_fusion_layers=1, n_decoder_layers=1)
    with pytest.raises(CheckpointMismatchError, match="different model"):
        FinetuneModule(other, init_from=str(ckpt))
    with pytest.raises(FileNotFoundError):
        load_net_state(tmp_path / "nope.ckpt")


def test_base_checkpoint_mismatch_is_one_clear_error():
    module = PretrainModule(nets()["prose"])
    state = {"state_dict": {"net." + k: v for k, v in nets()["fno"].state_dict().items()}}
    with pytest.raises(CheckpointMismatchError, match="does not match the configured Prose"):
        module.on_load_checkpoint(state)
