"""Encoder shapes, the momentum contrast (queue, logits, EMA) and the warm-up epoch."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dataset import PRESETS
from model import LSTMEncoder, MomentumContrast, length_groups, reconstruction_loss
from training import milestones
from training import adjust_learning_rate, train_one_epoch


@pytest.mark.parametrize('dataset, input_size, params', [
    ('ntu60_xsub', 150, 417_792), ('uwa3d', 45, 310_272), ('ucla', 60, 325_632), ('sbu', 90, 244_736)])
def test_input_sizes_and_parameter_counts(dataset, input_size, params):
    p = PRESETS[dataset]
    assert 3 * p['joints'] * p['persons'] == input_size
    encoder = LSTMEncoder(input_size, p['hidden_units'], p['lstm_layer'])
    assert sum(t.numel() for t in encoder.parameters()) == params
    out = encoder(torch.randn(2, 3, 7, p['joints'], p['persons']))
    assert out.shape == (2, p['hidden_units'])


class Recorder(nn.Module):
    def forward(self, seq):
        self.seq = seq
        return seq, None


def test_flatten_order_is_c_v_m():
    encoder = LSTMEncoder(3 * 4 * 2, 8)
    encoder.bi_lstm = Recorder()
    x = torch.randn(2, 3, 5, 4, 2)
    encoder(x)
    n, c, t, v, m = 1, 2, 3, 1, 1
    assert encoder.bi_lstm.seq[t, n, c * 4 * 2 + v * 2 + m] == x[n, c, t, v, m]


def test_masked_mean_ignores_padded_frames():
    encoder = LSTMEncoder(6, 4, pooling='masked_mean')
    encoder.bi_lstm = Recorder()
    x = torch.zeros(1, 3, 4, 2, 1)
    x[0, :, :2] = 1.0
    assert torch.allclose(encoder(x), torch.ones(1, 6))
    encoder.pooling = 'mean'
    assert torch.allclose(encoder(x), torch.full((1, 6), 0.5))


def contrast(k=500, dim=16):
    torch.manual_seed(0)
    return MomentumContrast(LSTMEncoder(6, dim), queue_size=k)


def test_queue_init_bound_and_copy():
    model = contrast()
    assert model.queue.abs().max() <= 1 / (16 / 3) ** 0.5
    assert all(torch.equal(a, b) for a, b in zip(model.encoder_q.parameters(), model.encoder_k.parameters()))
    assert not any(p.requires_grad for p in model.encoder_k.parameters())


def test_queue_pointer_wraps():
    model = contrast(k=500)
    for _ in range(16):
        x = torch.randn(32, 3, 5, 2, 1)
        model(x, x)
    assert model.queue_ptr.item() == 512 % 500
    with torch.no_grad():
        last_keys = model.encoder_k(x)
    # the 16th batch went to rows 480..499 and, wrapping, 0..11
    assert torch.allclose(model.queue[480:500], last_keys[:20]) and torch.allclose(model.queue[:12], last_keys[20:])


def test_logits_positive_first_and_batch_of_one():
    model = contrast(k=50)
    queue = model.queue.clone()
    x_q, x_k = torch.randn(1, 3, 5, 2, 1), torch.randn(1, 3, 5, 2, 1)
    logits, labels = model(x_q, x_k)
    assert logits.shape == (1, 51) and labels.tolist() == [0]
    q, k = model.encoder_q(x_q), model.encoder_k(x_k)
    assert logits[0, 0].item() == pytest.approx((q * k).sum().item() / 0.06, rel=1e-5)
    assert torch.allclose(logits[0, 1:], (q @ queue.t())[0] / 0.06, rtol=1e-5)
    F.cross_entropy(logits, labels).backward()
    assert model.encoder_q.bi_lstm.weight_ih_l0.grad is not None
    assert model.encoder_k.bi_lstm.weight_ih_l0.grad is None


def test_l2norm_bounds_logits():
    model = MomentumContrast(LSTMEncoder(6, 16), queue_size=20, l2norm=True)
    model.queue.copy_(F.normalize(model.queue, dim=1))
    logits, _ = model(torch.randn(4, 3, 5, 2, 1), torch.randn(4, 3, 5, 2, 1))
    assert logits.abs().max() <= 1 / 0.06 + 1e-4


def test_momentum_update_formula():
    model = contrast()
    with torch.no_grad():
        for p in model.encoder_q.parameters():
            p.add_(1.0)
    q = [p.clone() for p in model.encoder_q.parameters()]
    k = [p.clone() for p in model.encoder_k.parameters()]
    model.momentum_update()
    for new, old_k, old_q in zip(model.encoder_k.parameters(), k, q):
        assert torch.allclose(new, 0.999 * old_k + 0.001 * old_q)


def test_warmup_epoch_changes_no_query_weight_but_fills_queue():
    model = contrast(k=40)
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(model.encoder_q.parameters(), lr=0.1, momentum=0.9)
    batches = [(torch.randn(8, 3, 5, 2, 1), torch.randn(8, 3, 5, 2, 1)) for _ in range(5)]
    sums, step = train_one_epoch(lambda views: model(*views), batches, optimizer, 'warm-up', True, update=False,
                                 after_step=model.momentum_update)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(('encoder_q', 'encoder_k')))
    assert not torch.equal(before['queue'], after['queue']) and after['queue_ptr'].item() == 0
    assert step == 5 and sums[3].item() == 40  # five batches of 8 seen
    train_one_epoch(lambda views: model(*views), batches, optimizer, 'train', True, after_step=model.momentum_update)
    assert not torch.equal(before['encoder_q.bi_lstm.weight_ih_l0'], model.state_dict()['encoder_q.bi_lstm.weight_ih_l0'])


def test_learning_rate_tables():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0)
    pre = [adjust_learning_rate(opt, e, 0.01, milestones('30,70,150'), 0.1) for e in (1, 30, 31, 61)]
    assert pre == pytest.approx([0.01, 0.01, 0.001, 0.001])
    lin = [adjust_learning_rate(opt, e, 1.0, milestones('15,35,60,75'), 0.5) for e in (1, 15, 16, 36, 61, 76, 90)]
    assert lin == [1, 1, 0.5, 0.25, 0.125, 0.0625, 0.0625]


def test_batch_larger_than_queue_keeps_the_last_keys_in_order():
    model = contrast(k=5)
    model.queue_ptr.fill_(3)
    x = torch.randn(12, 3, 5, 2, 1)
    model(x, x)
    with torch.no_grad():
        keys = model.encoder_k(x)
    # sequential writes of 12 keys from row 3: rows 3,4,0,1,2,3,4,0,1,2,3,4 -> the last 5 keys at rows 0,1,2,3,4 = keys 7..11
    assert torch.equal(model.queue, keys[[7, 8, 9, 10, 11]]) and model.queue_ptr.item() == (3 + 12) % 5


@pytest.mark.parametrize('bidirectional, motion', [(False, False), (False, True), (True, False)])
def test_masked_mean_skips_trailing_padding_with_the_same_result(bidirectional, motion):
    torch.manual_seed(0)
    enc = LSTMEncoder(60, 16, 2, 'masked_mean', bidirectional=bidirectional, motion=motion)
    x = torch.randn(11, 3, 30, 20, 1)
    for i, length in enumerate(torch.randint(1, 30, (11,)).tolist()):
        x[i, :, length:] = 0
    x[3], x[5] = x[3].flip(1), x[5].flip(1)  # reversed views: padding first
    real = (x != 0).any(4).any(3).any(1)  # (N, T)
    if motion:
        x_in = torch.cat([x, torch.diff(x, dim=2, prepend=x[:, :, :1])], dim=1)
    else:
        x_in = x
    seq = x_in.permute(2, 0, 1, 3, 4).reshape(30, 11, -1)
    if bidirectional:  # the backward direction starts at each sequence's last real frame
        end = [30 - int(r.flip(0).int().argmax()) for r in real]
        padded = torch.stack([enc.bi_lstm(seq[:e, i:i + 1])[0][:, 0][real[i, :e]].mean(0) for i, e in enumerate(end)])
    else:
        out, _ = enc.bi_lstm(seq)
        mask = real.t()[..., None].float()
        padded = (out * mask).sum(0) / mask.sum(0)
    grouped = enc(x)
    torch.testing.assert_close(grouped, padded, rtol=1e-5, atol=1e-6)
    weights = list(enc.parameters())
    for g_grouped, g_padded in zip(torch.autograd.grad(grouped.square().sum(), weights),
                                   torch.autograd.grad(padded.square().sum(), weights)):
        torch.testing.assert_close(g_grouped, g_padded, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('bidirectional, layers', [(False, 1), (True, 1), (True, 2)])
def test_final_readout_takes_each_directions_last_real_step_on_padded_batches(bidirectional, layers):
    torch.manual_seed(0)
    enc = LSTMEncoder(6, 5, layers, 'final', cell='gru', bidirectional=bidirectional)
    x = torch.randn(7, 3, 12, 2, 1)
    lengths = [12, 3, 7, 1, 12, 9, 5]
    for i, length in enumerate(lengths):
        x[i, :, length:] = 0
    got = enc(x)
    assert got.shape == (7, 5 * (2 if bidirectional else 1))
    for i, length in enumerate(lengths):  # each sequence alone, without its padding
        _, h_n = enc.bi_lstm(x[i:i + 1, :, :length].permute(2, 0, 1, 3, 4).reshape(length, 1, -1))
        final = torch.cat(list(h_n[-(2 if bidirectional else 1):, 0]))  # last layer: forward, backward
        torch.testing.assert_close(got[i], final, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('pooling', ['mean', 'masked_mean', 'final'])
def test_two_stream_encoder_reads_positions_and_frame_differences_with_separate_rnns_and_concatenates(pooling):
    torch.manual_seed(0)
    enc = LSTMEncoder(6, 5, 1, pooling, cell='gru', bidirectional=True, motion=True, two_stream=True)
    x = torch.randn(4, 3, 9, 2, 1)
    x[1, :, 5:] = 0
    got = enc(x)
    assert got.shape == (4, 20) and enc.out_dim == 20
    position, velocity = (LSTMEncoder(6, 5, 1, pooling, cell='gru', bidirectional=True) for _ in range(2))
    position.bi_lstm, velocity.bi_lstm = enc.bi_lstm, enc.velocity_rnn
    torch.testing.assert_close(got[:, :10], position(x), rtol=1e-5, atol=1e-6)
    differences = torch.diff(x, dim=2, prepend=x[:, :, :1])  # 0 at t=0: a real frame all the same
    if pooling == 'mean':  # every frame counts
        torch.testing.assert_close(got[:, 10:], velocity(differences))
    else:  # sequence 1 over its 5 real frames (the positions' padding mask)
        out, h_n = enc.velocity_rnn(differences[1:2, :, :5].permute(2, 0, 1, 3, 4).reshape(5, 1, -1))
        expected = out.mean(0)[0] if pooling == 'masked_mean' else torch.cat(list(h_n[-2:, 0]))
        torch.testing.assert_close(got[1, 10:], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='needs motion'):
        LSTMEncoder(6, 5, two_stream=True)


def test_zero_input_decoder_never_sees_the_sequence_and_reconstruction_adds_to_the_loss():
    torch.manual_seed(0)
    model = MomentumContrast(LSTMEncoder(6, 8), queue_size=16, recon_weight=0.5, consistency_weight=0.1)
    inputs = []
    model.decoder.gru.register_forward_hook(lambda module, args, out: inputs.append(args[0]))
    x = torch.randn(4, 3, 10, 2, 1)
    x[0, :, 6:] = 0
    logits, labels, extra = model(x, x, x)
    assert all(i.abs().max() == 0 for i in inputs) and extra.item() > 0  # zero inputs; the key's decoding too
    assert [p.shape for p in model.trained_parameters()][-len(list(model.decoder.parameters())):] == \
        [p.shape for p in model.decoder.parameters()]
    decoded = model.decoder(model.encoder_q(x), 10)  # (T, N, C*V*M): depends on the feature alone
    torch.testing.assert_close(decoded, model.decoder(model.encoder_q(x).clone(), 10))
    target = x.permute(2, 0, 1, 3, 4).flatten(2)
    real = torch.ones(10, 4, 1)
    real[6:, 0] = 0  # sequence 0's padding is not reconstructed
    expected = ((decoded - target).abs() * real).sum() / (real.sum() * 6)
    torch.testing.assert_close(reconstruction_loss(decoded, x), expected)
    assert len(MomentumContrast(LSTMEncoder(6, 8), 16)(x, x)) == 2  # no decoder (official): logits, labels


def test_length_groups_cover_every_sequence_once_and_split_only_where_it_pays():
    frames = [150, 20, 150, 21, 150, 19] * 4
    groups = length_groups(frames)
    assert sorted(i for g, _ in groups for i in g) == list(range(len(frames)))
    assert all(longest == max(frames[i] for i in g) for g, longest in groups)
    assert [sorted({frames[i] for i in g}) for g, _ in groups] == [[19, 20, 21], [150]]
    assert len(length_groups([60] * 32)) == 1  # equal lengths: one call
    assert len(length_groups([60] * 31 + [59])) == 1  # a frame saved does not pay for a call
    assert length_groups([]) == []
