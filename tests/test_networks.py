"""generative.networks: shapes, conditioning, normalisation layers, receptive fields and FLOP counts."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from generative.networks import (
    DCGANDiscriminator,
    DCGANGenerator,
    PatchDiscriminator,
    ResnetGenerator,
    aligned_conv,
    choose_n_layers,
    condition_maps,
    count_params,
    flops_per_image,
    init_weights,
    patch_receptive_field,
    receptive_field,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("conditional", [False, True])
def test_dcgan_shapes(size, conditional):
    torch.manual_seed(0)
    kw = {"n_classes": 4, "cond_dim": 2} if conditional else {}
    g = DCGANGenerator(z_dim=16, size=size, channels=3, base=4, **kw)
    d = DCGANDiscriminator(size=size, channels=3, base=4, **kw)
    cond = {"y": torch.tensor([0, 3, 1]), "c": torch.rand(3, 2)} if conditional else {}
    x = g(torch.randn(3, 16), **cond)
    assert x.shape == (3, 3, size, size)
    assert x.min() >= -1 and x.max() <= 1  # tanh output
    assert d(x, **cond).shape == (3,)


def test_dcgan_rejects_bad_sizes_and_missing_conditions():
    for size in (48, 100, 4):
        with pytest.raises(ValueError, match="power of two"):
            DCGANGenerator(size=size)
        with pytest.raises(ValueError, match="power of two"):
            DCGANDiscriminator(size=size)
    g = DCGANGenerator(z_dim=8, size=32, base=4, n_classes=3)
    with pytest.raises(ValueError, match="conditional"):
        g(torch.randn(2, 8))
    with pytest.raises(ValueError, match="not conditional"):
        g(torch.randn(2, 8), torch.zeros(2, dtype=torch.long), torch.rand(2, 2))


def test_discriminator_spectral_norm_and_batch_norm_variants():
    d = DCGANDiscriminator(size=32, base=4, n_classes=3, cond_dim=2)
    weighted = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert weighted and all(parametrize.is_parametrized(m, "weight") for m in weighted)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    # the spectral norm of each normalised weight matrix is ~1
    conv = weighted[1]
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert sigma == pytest.approx(1.0, abs=0.05)
    plain = DCGANDiscriminator(size=32, base=4, spectral=False)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())


def test_projection_discriminator_depends_on_the_condition():
    torch.manual_seed(0)
    d = DCGANDiscriminator(size=32, base=4, n_classes=5, cond_dim=2).eval()
    x = torch.randn(1, 3, 32, 32).repeat(5, 1, 1, 1)
    c = torch.full((5, 2), 0.5)
    with torch.no_grad():
        by_class = d(x, torch.arange(5), c)
        by_target = d(x[:2], torch.zeros(2, dtype=torch.long), torch.tensor([[0.1, 0.1], [0.9, 0.8]]))
    assert by_class.unique().numel() == 5
    assert by_target[0] != by_target[1]


def test_conditional_generator_output_depends_on_the_condition():
    torch.manual_seed(0)
    g = DCGANGenerator(z_dim=8, size=32, base=4, n_classes=3, cond_dim=2).eval()
    z = torch.randn(1, 8).repeat(2, 1)
    with torch.no_grad():
        a = g(z, torch.tensor([0, 2]), torch.full((2, 2), 0.5))
        b = g(z, torch.tensor([0, 0]), torch.tensor([[0.5, 0.5], [0.1, 0.9]]))
    assert not torch.allclose(a[0], a[1])
    assert not torch.allclose(b[0], b[1])


@pytest.mark.parametrize("n_blocks", [6, 9])
def test_resnet_generator_preserves_size(n_blocks):
    g = ResnetGenerator(in_ch=3, out_ch=3, base=4, n_blocks=n_blocks)
    x = torch.randn(2, 3, 32, 24)
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in g.modules()) == 2 * n_blocks + 5
    assert any(isinstance(m, nn.ReflectionPad2d) for m in g.modules())
    assert sum(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in g.modules()) == 2
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in g.modules()) == 2
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.randn(1, 3, 30, 32))


def test_patchgan_receptive_field_and_depth_choice():
    assert patch_receptive_field(3) == 70
    assert [patch_receptive_field(n) for n in (1, 2, 4)] == [16, 34, 142]
    assert choose_n_layers(64) == 2 and patch_receptive_field(2) < 64 <= patch_receptive_field(3)
    assert choose_n_layers(128) == 3 and choose_n_layers(256) == 4
    d = PatchDiscriminator(in_ch=3, base=4, n_layers=3)
    assert d(torch.randn(2, 3, 64, 64)).shape == (2, 1, 6, 6)
    assert any(isinstance(m, nn.InstanceNorm2d) for m in d.modules())


def test_patchgan_receptive_field_matches_gradient_support():
    """With the (globally coupling) instance norms removed, one output logit's gradient covers exactly 70x70 px."""
    torch.manual_seed(0)
    d = PatchDiscriminator(in_ch=1, base=2, n_layers=3)
    for i, m in enumerate(d.net):
        if isinstance(m, nn.InstanceNorm2d):
            d.net[i] = nn.Identity()
    x = torch.randn(1, 1, 160, 160, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = (x.grad[0, 0].abs() > 0).any(1).nonzero()
    cols = (x.grad[0, 0].abs() > 0).any(0).nonzero()
    assert rows.max() - rows.min() + 1 == 70 == receptive_field(d)
    assert cols.max() - cols.min() + 1 == 70


def test_flops_of_known_layers():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert flops_per_image(conv, (3, 16, 16)) == 2 * (8 * 16 * 16) * (3 * 3 * 3)
    deconv = nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1)
    assert flops_per_image(deconv, (4, 8, 8)) == 2 * (4 * 8 * 8) * (2 * 4 * 4)
    assert flops_per_image(nn.Linear(10, 5), (10,)) == 2 * 50
    g = DCGANGenerator(z_dim=8, size=32, base=4, n_classes=2)
    g.train()
    flops = flops_per_image(g, (8,), y=torch.zeros(1, dtype=torch.long))
    assert flops > 0 and g.training  # mode restored


def test_init_and_param_count():
    lin = nn.Linear(100, 100)
    init_weights(lin, gain=0.02)
    assert lin.weight.std().item() == pytest.approx(0.02, rel=0.1) and lin.bias.abs().sum() == 0
    assert count_params(lin) == 100 * 100 + 100
    d = DCGANDiscriminator(size=32, base=4)
    before = [p.clone() for p in d.parameters()]
    init_weights(d)
    assert any(not torch.equal(a, b) for a, b in zip(before, d.parameters()))
    assert count_params(d) == sum(p.numel() for p in d.parameters())


def test_condition_maps_put_the_bump_in_the_class_channel():
    c = torch.tensor([[0.25, 0.75], [0.5, 0.5], [float("nan"), 0.5], [0.5, 0.5]])
    y = torch.tensor([2, 0, 1, -1])
    m = condition_maps(y, c, 3, 16, 64, 0.04)
    assert m.shape == (4, 3, 16, 16)
    peak = m[0, 2].flatten().argmax()
    assert (int(peak // 16), int(peak % 16)) == (12, 4)  # row from v = 0.75, column from u = 0.25
    assert m[0, 2].max() > 0.5 and m[0, :2].abs().max() == 0 and m[1, 1:].abs().max() == 0
    assert m[2].abs().max() == 0 and m[3].abs().max() == 0  # no target, no class: no bump
    one = condition_maps(None, c[:2], 3, 8, 64, 0.04)
    assert one.shape == (2, 1, 8, 8) and one[1, 0, 3:5, 3:5].min() > 0.5


def test_generator_with_maps_depends_on_where_the_target_is():
    torch.manual_seed(0)
    g = DCGANGenerator(z_dim=8, size=16, base=4, n_classes=2, cond_dim=2, map_channels=2).eval()
    z, y = torch.randn(1, 8), torch.tensor([0])
    a = g(z, y, torch.tensor([[0.2, 0.2]]))
    b = g(z, y, torch.tensor([[0.8, 0.8]]))
    diff = (a - b).abs().sum(1)[0]  # (16, 16)
    assert diff[2:5, 2:5].mean() > 3 * diff[8:10, 0:2].mean()  # the change is where the target was
    with pytest.raises(ValueError, match="map_channels"):
        DCGANGenerator(size=16, n_classes=2, cond_dim=0, map_channels=2)


def test_aligned_conv_is_the_layer_with_padded_channels():
    """Zero channels padded to multiples of 8 in and out: the same output and the same weight gradients (exactly, in
    double precision), for convolutions, transposed convolutions with extra input channels, spectral norm, and
    channels-last inputs; a layer with nothing to pad is called as it is."""
    torch.manual_seed(0)
    cases = [
        (nn.Conv2d(6, 5, 4, stride=2, padding=1), (2, 6, 8, 8), ()),
        (spectral_norm(nn.Conv2d(6, 16, 4, stride=2, padding=1)), (2, 6, 8, 8), ()),
        (nn.ConvTranspose2d(13, 3, 4, stride=2, padding=1), (2, 10, 4, 4), ((2, 3, 4, 4),)),
        (nn.ConvTranspose2d(11, 7, 3, stride=2, padding=1, output_padding=1, bias=False), (2, 11, 4, 4), ()),
    ]
    for layer, shape, extra_shapes in cases:
        layer = layer.double().eval()  # eval: a spectrally normalised weight is the same in both calls
        x = torch.randn(shape, dtype=torch.float64)
        extra = [torch.randn(s, dtype=torch.float64) for s in extra_shapes]
        for channels_last in (False, True):
            xi = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            layer.zero_grad()
            ref = layer(torch.cat([xi, *extra], 1) if extra else xi)
            (ref**2).sum().backward()
            grads = [p.grad.clone() for p in layer.parameters()]
            layer.zero_grad()
            out = aligned_conv(layer, xi, 8, extra)
            (out**2).sum().backward()
            assert out.shape == ref.shape and torch.allclose(out, ref, rtol=0, atol=1e-12)
            for g, p in zip(grads, layer.parameters()):
                assert torch.allclose(p.grad, g, rtol=0, atol=1e-10)
    aligned = nn.Conv2d(8, 16, 3)
    calls = []
    aligned.register_forward_hook(lambda *a: calls.append(1))
    aligned_conv(aligned, torch.randn(1, 8, 5, 5), 8)
    aligned_conv(nn.Conv2d(3, 5, 3), torch.randn(1, 3, 5, 5), 1)  # multiple 1: nothing to pad
    assert calls == [1]


@pytest.mark.parametrize("maps", [0, 2])
def test_channel_multiple_keeps_the_dcgan_function_and_its_flop_count(maps):
    torch.manual_seed(0)
    g = DCGANGenerator(z_dim=8, size=16, base=4, n_classes=2, cond_dim=2, map_channels=maps)
    d = DCGANDiscriminator(size=16, channels=3 + maps, base=4, n_classes=2, cond_dim=2).eval()
    z, y, c = torch.randn(3, 8), torch.tensor([0, 1, 1]), torch.rand(3, 2)
    x = torch.randn(3, 3 + maps, 16, 16)
    kw = {"y": y[:1], "c": c[:1]}
    flops = flops_per_image(g, (8,), **kw), flops_per_image(d, (3 + maps, 16, 16), **kw)
    keys = g.state_dict().keys(), d.state_dict().keys()
    ref = g(z, y, c), d(x, y, c)
    g.channel_multiple = d.channel_multiple = 8
    out = g(z, y, c), d(x, y, c)
    for a, b in zip(out, ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert (flops_per_image(g, (8,), **kw), flops_per_image(d, (3 + maps, 16, 16), **kw)) == flops
    assert g.channel_multiple == d.channel_multiple == 8  # restored after counting
    assert (g.state_dict().keys(), d.state_dict().keys()) == keys  # an execution setting, not a parameter
