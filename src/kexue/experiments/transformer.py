"""Reproduction of [4765] / [Vaswani]: the encoder–decoder Transformer learns copy, reverse and sort, and
decodes them greedily with a KV cache that equals full recomputation.

The paper's task is machine translation (WMT14), far beyond a CPU budget; it has no algorithmic tasks. The
three tasks here are the standard sanity checks of a sequence-to-sequence model: each needs attention over
the whole source (reverse: by position, sort: by content) and exact, variable-length output, so a model
that reaches ≥ 99% exact-sequence accuracy on held-out random sequences has all the parts working: masks,
positions, cross-attention, the decoder's causal mask and the cache.

Data (per task, fresh random draws from the config's seed): digits 0–9 as tokens 3–12, lengths uniform in
[min_len, max_len], source right-padded with PAD = 0; target = BOS y EOS then PAD, with y = x (copy),
x reversed, or x sorted ascending. Training follows the paper's recipe scaled down: post-LN layers, Adam
(β₁, β₂, ε) = (0.9, 0.98, 1e-9) and the warm-up schedule lrate = d_model^−0.5·min(s^−0.5, s·w^−1.5)
([Vaswani] §5.3, eq. 3, here at half its height); no dropout (pairs are drawn fresh, and the quick
preset sees none twice). Not in the paper: the weights used for validation and test are an EMA of the
trained ones, and each task stops once its validation set is decoded 100% right (the steps column).

Evaluation on `n_test` held-out sequences: greedy decoding (`kexue.nn.decoding.greedy`) through the model's
KV-cached `step`, exact-sequence and token accuracy; the same decode with an uncached step that re-runs the
full forward each step must give identical tokens, and the cached step logits must equal the full forward's
teacher-forced logits (max |Δ| reported).

Sources: [4765] kexue.fm/archives/4765; [Vaswani] Vaswani et al., NeurIPS 2017.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from kexue.experiments.runner import Context, Outcome, Reproduction, markdown_table
from kexue.nn.transformer import Seq2SeqTransformer, TransformerConfig

POST = "https://kexue.fm/archives/4765"
PAD, BOS, EOS, FIRST_DIGIT = 0, 1, 2, 3  # token ids; digit d is token FIRST_DIGIT + d
TASKS = ("copy", "reverse", "sort")
CHECK_ACC = "every task ≥ {target:.0%} exact-sequence accuracy (greedy, KV cache, held-out sequences)"
CHECK_CACHE = "cached greedy decoding = full recomputation (identical tokens on every test sequence)"

PAPER = """The paper has no copy/reverse/sort task. Its headline results are machine translation on WMT14
([Vaswani] Table 2): **BLEU 28.4 EN→DE and 41.8 EN→FR** (Transformer big, 3.5 days on 8 P100 GPUs); the base
model (d_model 512, 6 + 6 layers, h = 8, d_ff 2048, 65M parameters) gets 27.3 / 38.1 after 12 hours.
Su's post [4765] tests only a single attention layer on IMDB sentiment (Keras, maxlen 80, 8 heads × 16):
val_acc ≈ 0.843 without and 0.8447 with position embeddings. Neither is comparable with this run; here the
claim is the qualitative one that the architecture, trained with the paper's recipe, learns exact
sequence transductions, and that incremental (cached) decoding is exact."""


@dataclass(frozen=True)
class Config:
    tasks: tuple[str, ...] = TASKS  # one model per task
    min_len: int = 1  # source length ~ U{min_len … max_len}
    max_len: int = 10
    n_train: int = 60_000  # training pairs drawn once (never repeat within the quick budget)
    n_valid: int = 512  # for early stopping at `stop_at` greedy sequence accuracy
    n_test: int = 1000  # held-out pairs of the reported accuracy
    d_model: int = 64  # a small [Vaswani] model: the base model is 512 / 8 heads / 6 layers / 2048
    heads: int = 4
    layers: int = 2  # in each of the encoder and the decoder
    d_ff: int = 128
    dropout: float = 0.0  # [Vaswani] 0.1; here pairs are drawn fresh and hardly repeat
    positions: str = "sinusoidal"  # [4765] eq. 9
    norm_first: bool = False  # the paper's post-LN
    batch_size: int = 64
    max_steps: int = 3000  # per task; training stops earlier once validation reaches stop_at
    warmup: int = 200  # w of the [Vaswani] eq. 3 schedule (paper: 4000 with batches of 25k tokens)
    lr_scale: float = 0.5  # multiplies the eq. 3 learning rate (1.0 oscillates on these tasks) [R]
    ema_decay: float | None = 0.99  # evaluate and keep an EMA of the weights (not in the paper): it
    # removes the late oscillation of exact-match accuracy and halves the steps to 100% [R]
    eval_every: int = 100  # steps between validation decodes
    stop_at: float = 1.0  # stop a task once validation sequence accuracy reaches this
    target: float = 0.99  # the check: test sequence accuracy of every task
    seed: int = 0

    def __post_init__(self) -> None:
        bad = set(self.tasks) - set(TASKS)
        if bad or not self.tasks:
            raise ValueError(f"tasks must be drawn from {TASKS}, got {self.tasks}")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 ≤ min_len ≤ max_len, got {self.min_len}, {self.max_len}")


QUICK = Config()
FULL = Config(
    max_len=20,  # longer sequences: harder reversal and sorting
    n_train=200_000,
    n_test=2000,
    d_model=128,
    heads=8,
    layers=3,
    d_ff=512,
    max_steps=12_000,
    warmup=1000,
    ema_decay=0.995,
)


# ----------------------------------------------------------------------------------------------- data
def make_pairs(task: str, n: int, cfg: Config, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(src (n, max_len), tgt (n, max_len + 2)): digits, right-padded; tgt = BOS f(src) EOS PAD…."""
    L = cfg.max_len
    lengths = torch.randint(cfg.min_len, L + 1, (n,), generator=generator)  # (n,)
    digits = torch.randint(0, 10, (n, L), generator=generator) + FIRST_DIGIT  # (n, L)
    i = torch.arange(L)
    real = i < lengths[:, None]  # (n, L)
    src = digits.masked_fill(~real, PAD)
    if task == "copy":
        y = src
    elif task == "reverse":  # y_i = x_{len − 1 − i} on the real part
        idx = (lengths[:, None] - 1 - i).clamp(min=0)  # (n, L)
        y = src.gather(1, idx).masked_fill(~real, PAD)
    else:  # sort: pads (PAD = 0 < digits) go last after sorting with a large stand-in
        y = src.masked_fill(~real, 10**6).sort(-1).values.masked_fill(~real, PAD)
    tgt = torch.full((n, L + 2), PAD, dtype=torch.long)
    tgt[:, 0] = BOS
    tgt[:, 1 : L + 1] = y
    tgt.scatter_(1, lengths[:, None] + 1, EOS)  # EOS right after the last real token
    return src, tgt


# ------------------------------------------------------------------------------------------ decoding
def recompute_step(model: Seq2SeqTransformer):
    """An uncached step (kexue.nn.decoding interface): every call re-runs model(src, all tokens so far).
    The state is {"src", "src_mask"} (+ "tgt": the tokens so far), all batch-first."""

    def step(tokens: Tensor, state: dict) -> tuple[Tensor, dict]:
        seq = tokens if "tgt" not in state else torch.cat((state["tgt"], tokens), 1)  # (B, T)
        logits = model(state["src"], seq, state["src_mask"])[:, -1]  # (B, V)
        return logits, {"src": state["src"], "src_mask": state["src_mask"], "tgt": seq}

    return step


@torch.no_grad()
def decode(model: Seq2SeqTransformer, src: Tensor, *, max_new: int, cached: bool = True) -> Tensor:
    """Greedy outputs (B, max_new), PAD after EOS; cached = through model.step, else recompute_step."""
    from kexue.nn.decoding import greedy

    prompt = torch.full((src.shape[0], 1), BOS, dtype=torch.long, device=src.device)  # (B, 1)
    if cached:
        step, state = model.step, model.encode(src)
    else:
        step, state = recompute_step(model), {"src": src, "src_mask": src != PAD}
    out = greedy(step, prompt, max_new=max_new, end_ids=EOS, pad_id=PAD, state=state)
    return torch.nn.functional.pad(out, (0, max_new - out.shape[1]), value=PAD)  # (B, max_new)


def accuracy(pred: Tensor, tgt: Tensor) -> tuple[float, float]:
    """(exact-sequence accuracy, token accuracy over the target's real tokens incl. EOS)."""
    want = tgt[:, 1:]  # (B, L + 1): y EOS PAD…
    same = pred == want
    real = want != PAD
    seq = same.all(1).float().mean().item()
    tok = (same & real).sum().item() / real.sum().item()
    return seq, tok


@torch.no_grad()
def cache_logit_gap(model: Seq2SeqTransformer, src: Tensor, tgt: Tensor) -> float:
    """max |cached step logits − full teacher-forced logits| over a batch."""
    full = model(src, tgt[:, :-1])  # (B, T, V)
    state, outs = model.encode(src), []
    for t in range(tgt.shape[1] - 1):
        logits, state = model.step(tgt[:, t : t + 1], state)
        outs.append(logits)
    return (torch.stack(outs, 1) - full).abs().max().item()


# ------------------------------------------------------------------------------------------ training
def model_config(cfg: Config) -> TransformerConfig:
    return TransformerConfig(
        vocab_size=FIRST_DIGIT + 10,
        d_model=cfg.d_model,
        heads=cfg.heads,
        layers=cfg.layers,
        d_ff=cfg.d_ff,
        dropout=cfg.dropout,
        positions=cfg.positions,
        max_len=cfg.max_len + 2,
        norm_first=cfg.norm_first,
        pad_id=PAD,
    )


def noam(d_model: int, warmup: int):
    """[Vaswani] eq. 3 as a factor of the base lr = d_model^−0.5: min(s^−0.5, s·w^−1.5), s = step + 1."""

    def f(step: int) -> float:
        s = step + 1
        return min(s**-0.5, s * warmup**-1.5)

    return f


def train_task(task: str, cfg: Config, ctx: Context) -> dict[str, Any]:
    from kexue.train.callbacks import Callback, Evaluate, LRSchedule
    from kexue.train.distributed import Dist
    from kexue.train.trainer import TrainConfig, Trainer

    g = torch.Generator().manual_seed(cfg.seed * 1000 + TASKS.index(task))
    src, tgt = make_pairs(task, cfg.n_train, cfg, g)
    vsrc, vtgt = (t.to(ctx.device) for t in make_pairs(task, cfg.n_valid, cfg, g))
    with torch.random.fork_rng(devices=[ctx.device] if ctx.device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = Seq2SeqTransformer(model_config(cfg)).to(ctx.device)
    lr = cfg.lr_scale * cfg.d_model**-0.5
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9)  # [Vaswani] §5.3

    curve: list[dict[str, float]] = []

    class Curve(Callback):  # training loss at each logging step, and stop once validation is perfect
        def on_step_end(self, trainer, logs):
            if "train/loss" in logs:
                curve.append({"step": trainer.step, "loss": logs["train/loss"]})
            if logs.get("valid_seq_acc", -1.0) >= cfg.stop_at:
                trainer.stop(f"validation sequence accuracy reached {cfg.stop_at}")

    def valid(m):
        seq, tok = accuracy(decode(m, vsrc, max_new=cfg.max_len + 1), vtgt)
        return {"valid_seq_acc": seq, "valid_token_acc": tok}

    evaluate = Evaluate(valid, cfg.eval_every, prefix="", use_ema=cfg.ema_decay is not None)
    train = TrainConfig(
        steps=cfg.max_steps,
        batch_size=cfg.batch_size,
        lr=lr,
        seed=cfg.seed,
        progress=False,
        log_every=25,
        ema_decay=cfg.ema_decay,
    )
    trainer = Trainer(
        model,
        TensorDataset(src, tgt),
        train,
        dist=Dist(device=ctx.device),
        optimizer=opt,
        callbacks=[LRSchedule(noam(cfg.d_model, cfg.warmup)), evaluate, Curve()],
    )
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    if trainer.ema is not None:  # keep the averaged weights that validation saw
        averaged = trainer.ema.averaged()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(averaged[name])
    model.eval()
    return {
        "model": model,
        "steps": trainer.step,
        "seconds": seconds,
        "curve": curve,
        "valid": [{"step": s, **m} for s, m in evaluate.history],
    }


def evaluate_task(task: str, model: Seq2SeqTransformer, cfg: Config, device) -> dict[str, Any]:
    g = torch.Generator().manual_seed(10**6 + cfg.seed * 1000 + TASKS.index(task))  # disjoint from training
    src, tgt = (t.to(device) for t in make_pairs(task, cfg.n_test, cfg, g))
    cached = decode(model, src, max_new=cfg.max_len + 1)
    t0 = time.perf_counter()
    uncached = decode(model, src, max_new=cfg.max_len + 1, cached=False)
    seq, tok = accuracy(cached, tgt)
    return {
        "seq_acc": seq,
        "token_acc": tok,
        "cached_equals_uncached": bool(torch.equal(cached, uncached)),
        "uncached_seconds": time.perf_counter() - t0,
        "max_logit_gap": cache_logit_gap(model, src[:256], tgt[:256]),
    }


# ------------------------------------------------------------------------------------------ the run
def checks_from(cfg: Config, rows: list[dict[str, Any]]) -> dict[str, bool]:
    return {
        CHECK_ACC.format(target=cfg.target): all(r["seq_acc"] >= cfg.target for r in rows),
        CHECK_CACHE: all(r["cached_equals_uncached"] for r in rows),
    }


def _figure(path, histories: dict[str, dict]) -> None:
    from kexue.plots import _plt

    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for task, h in histories.items():
        a.plot([c["step"] for c in h["curve"]], [c["loss"] for c in h["curve"]], label=task)
        b.plot(
            [v["step"] for v in h["valid"]], [v["valid_seq_acc"] for v in h["valid"]], marker=".", label=task
        )
    a.set(xlabel="step", ylabel="training cross-entropy (nats/token)", yscale="log", title="training loss")
    b.set(xlabel="step", ylabel="greedy exact-sequence accuracy", title="validation (KV-cached greedy)")
    for ax in (a, b):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(cfg: Config, ctx: Context) -> Outcome:
    rows, histories = [], {}
    for task in cfg.tasks:
        fit = train_task(task, cfg, ctx)
        ev = evaluate_task(task, fit["model"], cfg, ctx.device)
        rows.append({"task": task, **ev, "steps": fit["steps"], "seconds": fit["seconds"]})
        histories[task] = {"curve": fit["curve"], "valid": fit["valid"]}
        if ctx.progress:
            ctx.say(f"transformer: {task} seq acc {ev['seq_acc']:.4f} after {fit['steps']} steps")
    checks = checks_from(cfg, rows)
    _figure(ctx.figure_path("transformer.png"), histories)
    params = sum(p.numel() for p in Seq2SeqTransformer(model_config(cfg)).parameters())
    table = markdown_table(
        rows, ["task", "seq_acc", "token_acc", "steps", "seconds", "cached_equals_uncached", "max_logit_gap"]
    )
    report = (
        f"Encoder–decoder, {cfg.layers} + {cfg.layers} post-LN layers, d_model {cfg.d_model}, "
        f"{cfg.heads} heads, d_ff {cfg.d_ff}, {cfg.positions} positions, {params:,} parameters; one model "
        "per task. Sources of "
        f"length {cfg.min_len}–{cfg.max_len} over 10 digits; {cfg.n_test} held-out test sequences decoded "
        f"greedily through the KV cache. Adam with the [Vaswani] eq. 3 warm-up (×{cfg.lr_scale}, "
        f"w = {cfg.warmup}), batch {cfg.batch_size}, weight EMA {cfg.ema_decay}. Training stops once the "
        f"validation set ({cfg.n_valid} sequences) is decoded {cfg.stop_at:.0%} right, or at "
        f"{cfg.max_steps} steps.\n\n"
        f"{table}\n\n"
        "seq_acc: the whole output (digits and EOS) is right; token_acc: target tokens right at their "
        "position; max_logit_gap: max |cached step logits − full forward logits| (teacher forcing, "
        f"{torch.get_default_dtype()}). Seconds are wall-clock training time on this machine, "
        "whatever else it was running."
    )
    extra = {"histories": histories, "parameters": params}
    return Outcome(rows=rows, checks=checks, report=report, figures=["transformer.png"], extra=extra)


REPRODUCTION = Reproduction(
    name="transformer",
    systems=(32,),
    post=POST,
    claim=(
        "The Transformer of 'Attention Is All You Need' (multi-head scaled dot-product attention, "
        "sinusoidal positions, post-LN encoder–decoder, the paper's Adam warm-up schedule) learns exact "
        "sequence transduction — copy, reverse and sort of random digit strings — and decodes it "
        "incrementally with a KV cache that gives exactly the tokens of full recomputation."
    ),
    expectation=(
        "Each task's held-out exact-sequence accuracy under greedy cached decoding is ≥ 0.99 (our target for "
        "a solved algorithmic task [R]; the paper has no such task); cached and uncached greedy decoding "
        "produce identical tokens on every test sequence."
    ),
    paper=PAPER,
    presets={"quick": QUICK, "full": FULL},
    run=run,
)
