"""layer_analysis: identity distance, exact FFT spectra of circular convs, and `inspect --layers`."""

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from test_folding_family import _randomize_bn

from dirac_deploy import DiracNet, cifar_spec, fold
from dirac_deploy.cli import main
from dirac_deploy.layer_analysis import analyze_chain, conv_singular_values, identity_distance


@pytest.mark.parametrize("out,cin,k,n", [(3, 2, 3, 5), (4, 4, 3, 6), (2, 3, 1, 4), (3, 3, 5, 4)])
def test_fft_singular_values_match_the_dense_circular_conv_matrix(out, cin, k, n):
    w = torch.randn(out, cin, k, k, dtype=torch.float64)
    cols = []
    for j in range(cin * n * n):  # the conv applied to every basis image = the dense matrix, column by column
        e = torch.zeros(cin * n * n, dtype=torch.float64)
        e[j] = 1
        img = e.view(1, cin, n, n)
        # cross-correlation with circular wrap at offsets 0..k-1, matching the FFT's tap placement
        padded = F.pad(img, (0, k - 1, 0, k - 1), mode="circular") if k - 1 <= n else None
        cols.append(F.conv2d(padded, w).reshape(-1))
    dense = torch.stack(cols, 1)
    expected = torch.linalg.svdvals(dense).sort().values
    ours = conv_singular_values(w, n).sort().values
    assert torch.allclose(ours, expected, atol=1e-9)


def test_identity_distance():
    scale = torch.tensor([2.0, -1.0, 0.5])
    delta = torch.zeros(3, 3, 3, 3)
    torch.nn.init.dirac_(delta)
    assert identity_distance(scale.view(-1, 1, 1, 1) * delta) == pytest.approx(0.0)
    w = torch.zeros(3, 3, 3, 3)
    w[:, :, 0, 0] = 1.0
    assert identity_distance(w) == pytest.approx(1.0)


def test_analyze_chain_and_inspect_layers_cli(tmp_path):
    net = _randomize_bn(DiracNet(cifar_spec(10))).eval()
    stats = analyze_chain(fold(net).plain, (3, 32, 32))
    assert [s.input_size for s in stats] == [32, 32, 32, 16, 16, 8, 8]
    assert all(s.spectral_norm > 0 and s.condition_number >= 1 and s.activation_rms > 0 for s in stats)
    torch.save(net.state_dict(), tmp_path / "n.pth")
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "n.pth"), "--layers", "--plot", str(tmp_path / "l.png")])
    assert res.exit_code == 0, res.output
    assert "group2_block1_conv" in res.stdout and "identity dist." in res.stdout
    assert (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"
