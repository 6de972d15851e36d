"""The map: the 38 systems of ../shared/SYSTEMS.md with their true status (`kexue list`, README table).

Flags: implemented · tested (tests assert its math) · reproduced (`kexue reproduce …` shows its claim) ·
peer (measured side by side with the library users would pick). A row's evidence — the modules, test
files and reproductions behind its flags — is listed with it, and tests/test_systems.py checks that
every flag is backed: modules import, test files exist, reproductions are registered.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class System:
    id: int
    name: str
    family: str
    posts: tuple[int, ...]
    also: tuple[int, ...]
    works: str  # what "works" means (SYSTEMS.md)
    modules: tuple[str, ...] = ()  # implementation → implemented
    tests: tuple[str, ...] = ()  # test files asserting its math → tested
    reproductions: tuple[str, ...] = ()  # `kexue reproduce` names → reproduced
    peers: tuple[str, ...] = ()  # benchmarks against a peer library → peer
    note: str = ""  # for rows that are not systems
    issue: int | None = None  # the issue that builds it

    @property
    def url(self) -> str:
        return f"https://kexue.fm/archives/{self.posts[0]}"

    @property
    def flags(self) -> dict[str, bool]:
        return {
            "implemented": bool(self.modules),
            "tested": bool(self.tests),
            "reproduced": bool(self.reproductions),
            "peer": bool(self.peers),
        }

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "family": self.family,
            "url": self.url,
            "posts": list(self.posts),
            "also": list(self.also),
            "works": self.works,
            **self.flags,
            "note": self.note,
            "modules": list(self.modules),
            "tests": list(self.tests),
            "reproductions": list(self.reproductions),
            "peers": list(self.peers),
            "issue": self.issue,
        }


def _s(id, name, family, posts, also, works, **kw) -> System:
    return System(id, name, family, tuple(posts), tuple(also), works, **kw)


SID_NOTE = (
    "quick run: fast early fall holds; one step is 5.7× (ring) and 2.3× (digits) the 50-step teacher, "
    "not ≤ 1.5×"
)

SYSTEMS: tuple[System, ...] = (
    _s(
        1,
        "reparameterization",
        "estimators",
        [6705],
        [],
        "Gaussian, Gumbel-max, Gumbel-softmax, straight-through, "
        "score-function estimators; bias/variance against exact enumeration",
        modules=(
            "kexue.estimators.gaussian",
            "kexue.estimators.gumbel",
            "kexue.estimators.straight_through",
            "kexue.estimators.score_function",
            "kexue.vae.categorical_vae",
        ),
        tests=(
            "tests/estimators/test_estimators.py",
            "tests/vae/test_categorical_vae.py",
            "tests/experiments/test_gumbel_estimators.py",
        ),
        reproductions=("gumbel-estimators",),
        issue=7,
    ),
    _s(
        2,
        "sparse-attention",
        "attention",
        [6853],
        [],
        "local, atrous, strided patterns computed block-wise (linear time), equal to masked dense attention",
        modules=("kexue.nn.sparse_attention",),
        tests=("tests/nn/test_sparse_attention.py", "tests/bench/test_attention.py"),
        peers=("attention",),
        issue=5,
    ),
    _s(
        3,
        "dae-generative",
        "diffusion",
        [7038],
        [],
        "denoising autoencoder as score; Denoising Density Estimators; annealed DSM + Langevin",
        modules=("kexue.dae.tweedie", "kexue.dae.dde", "kexue.dae.langevin", "kexue.dae.ncsn"),
        tests=(
            "tests/dae/test_tweedie.py",
            "tests/dae/test_dde.py",
            "tests/dae/test_langevin.py",
            "tests/dae/test_ncsn.py",
        ),
        reproductions=("dae-generative",),
        issue=4,
    ),
    _s(
        4,
        "vae",
        "vae",
        [7725],
        [5253, 5343],
        "VAE (MLP/conv), IWAE NLL, the geometric-view figure",
        modules=("kexue.vae.vae", "kexue.vae.iwae", "kexue.vae.nets", "kexue.data.binarize"),
        tests=("tests/vae/test_vae.py", "tests/vae/test_iwae.py"),
        reproductions=("vae",),
        issue=7,
    ),
    _s(
        5,
        "noise-gradient-penalty",
        "training",
        [7466],
        [],
        "input noise ≈ gradient penalty ≈ adversarial training, measured on a classifier",
        modules=("kexue.train.adversarial", "kexue.nn.classifier"),
        tests=("tests/train/test_adversarial.py",),
        reproductions=("noise-vs-gradient-penalty",),
        issue=2,
    ),
    _s(
        6,
        "attention-scale",
        "attention",
        [9812],
        [],
        "1/√d, log-n and gradient-maximisation scales; the post's curve reproduced",
        modules=("kexue.nn.attention_scale",),
        tests=("tests/nn/test_attention_scale.py", "tests/experiments/test_attention_scale.py"),
        reproductions=("attention-scale",),
        issue=5,
    ),
    _s(
        7,
        "sid",
        "diffusion",
        [10085],
        [],
        "Score identity Distillation to a one-step generator",
        modules=("kexue.diffusion.sid",),
        tests=("tests/diffusion/test_sid.py",),
        reproductions=("sid",),
        note=SID_NOTE,
        issue=4,
    ),
    _s(
        8,
        "gmpy2",
        "math",
        [3026],
        [],
        "a post about using a library, not a system: gmpy2 (or mpmath) serves as "
        "the high-precision oracle in numerical tests where float64 is in doubt",
        tests=("tests/data/test_toy2d.py", "tests/metrics/test_frechet.py"),
        note="not a system: mpmath (the Python counterpart of the post's gmpy2) is the 50-digit oracle "
        "in the numerical tests marked 'row 8'",
        issue=2,
    ),
    _s(
        9,
        "nvae",
        "vae",
        [7574],
        [],
        "NVAE-style deep hierarchical VAE sized for a CPU",
        modules=("kexue.vae.nvae",),
        tests=("tests/vae/test_nvae.py", "tests/experiments/test_nvae.py"),
        reproductions=("nvae",),
        issue=7,
    ),
    _s(
        10,
        "bigan-qp",
        "gan",
        [6214],
        [6163],
        "BiGAN-QP (GAN-QP objective + encoder with stop-gradient reconstruction)",
        modules=("kexue.gan.bigan",),
        tests=("tests/gan/test_bigan.py", "tests/experiments/test_bigan_qp.py"),
        reproductions=("bigan-qp",),
        issue=8,
    ),
    _s(
        11,
        "o-gan",
        "gan",
        [6409],
        [],
        "O-GAN: the discriminator doubles as an encoder",
        modules=("kexue.gan.ogan",),
        tests=("tests/gan/test_ogan.py", "tests/experiments/test_o_gan.py"),
        reproductions=("o-gan",),
        issue=8,
    ),
    _s(
        12,
        "hierarchical-position",
        "attention",
        [7947],
        [],
        "hierarchical decomposition of learned position tables (n → n²)",
        modules=("kexue.nn.positions",),
        tests=("tests/nn/test_positions.py", "tests/experiments/test_hierarchical_position.py"),
        reproductions=("hierarchical-position",),
        note="full run: exact up to n, runs at n²; 3.6× chance beyond n; α > 0.5 adapts faster (3 of 7)",
        issue=5,
    ),
    _s(
        13,
        "rope",
        "attention",
        [9403],
        [8265, 8397],
        "RoPE 1-D, 2-D and the general orthogonal form; relativity proved",
        modules=("kexue.nn.rope",),
        tests=(
            "tests/nn/test_rope.py",
            "tests/nn/test_rope_peer.py",
            "tests/experiments/test_length_extrapolation.py",
        ),
        reproductions=("length-extrapolation",),
        note="full run: a window keeps accuracy (+48 at 16×); log n at inference only −2.7 points (4 of 5)",
        issue=5,
    ),
    _s(
        14,
        "transformer-vq",
        "attention",
        [9844],
        [],
        "VQ keys, linear-time attention with cache, exact against its quadratic form",
        modules=("kexue.nn.vq_attention",),
        tests=("tests/nn/test_vq_attention.py", "tests/experiments/test_transformer_vq.py"),
        reproductions=("transformer-vq",),
        issue=5,
    ),
    _s(
        15,
        "ddpm",
        "diffusion",
        [9119, 9164],
        [9152],
        "DDPM training and ancestral sampling, posterior by Bayes' rule",
        modules=(
            "kexue.diffusion.schedules",
            "kexue.diffusion.ddpm",
            "kexue.nn.resmlp",
            "kexue.nn.unet",
        ),
        tests=("tests/diffusion/test_schedules.py", "tests/diffusion/test_ddpm.py"),
        reproductions=("ddpm",),
        peers=("samplers",),
        issue=3,
    ),
    _s(
        16,
        "word2vec-svd",
        "text",
        [4233],
        [],
        "PPMI/SPPMI + truncated SVD vectors against SGNS",
        modules=(
            "kexue.text.wordvec.cooccurrence",
            "kexue.text.wordvec.pmi",
            "kexue.text.wordvec.svd",
            "kexue.text.wordvec.sgns",
            "kexue.text.wordvec.evaluate",
        ),
        tests=(
            "tests/text/wordvec/test_pmi.py",
            "tests/text/wordvec/test_svd.py",
            "tests/text/wordvec/test_sgns.py",
            "tests/text/wordvec/test_cooccurrence.py",
        ),
        reproductions=("word2vec-svd",),
        issue=11,
    ),
    _s(
        17,
        "vi-unified",
        "gan",
        [5716],
        [],
        "VAE, GAN, AAE, ALI in one framework; the VI-GAN regulariser",
        modules=("kexue.gan.gan", "kexue.gan.aae"),
        tests=(
            "tests/gan/test_vi_regularizer.py",
            "tests/gan/test_aae.py",
            "tests/experiments/test_vi_gan.py",
        ),
        reproductions=("vi-gan",),
        issue=8,
    ),
    _s(
        18,
        "layers-and-callbacks",
        "training",
        [5765],
        [],
        "trainer callbacks; modules contributing their own losses",
        modules=("kexue.train.trainer", "kexue.train.callbacks", "kexue.train.aux_loss"),
        tests=(
            "tests/train/test_callbacks.py",
            "tests/train/test_aux_loss.py",
            "tests/train/test_trainer.py",
        ),
        issue=2,
    ),
    _s(
        19,
        "cluster-vae",
        "vae",
        [5887],
        [],
        "mixture-prior VAE: unsupervised clustering + conditional generation",
        modules=("kexue.vae.cluster_vae", "kexue.metrics.clustering"),
        tests=(
            "tests/vae/test_cluster_vae.py",
            "tests/metrics/test_clustering.py",
            "tests/experiments/test_cluster_vae.py",
        ),
        reproductions=("cluster-vae",),
        issue=7,
    ),
    _s(
        20,
        "gan-reading-list",
        "gan",
        [6240],
        [],
        "a reading list, not a system: covered by the GAN loss zoo (SN, WGAN-GP, relativistic, …)",
        modules=("kexue.gan.losses", "kexue.gan.nets"),
        tests=("tests/gan/test_losses.py", "tests/experiments/test_gan_losses.py"),
        reproductions=("gan-losses",),
        note="a reading list, not a system: the GAN loss zoo (kexue.gan.losses) stands behind it",
        issue=8,
    ),
    _s(
        21,
        "rsgan",
        "gan",
        [6110],
        [],
        "relativistic discriminators (RSGAN, RaSGAN, RaLSGAN), correct gradients",
        modules=("kexue.gan.losses",),
        tests=("tests/gan/test_losses.py",),
        reproductions=("gan-losses",),
        issue=8,
    ),
    _s(
        22,
        "single-loss-gan",
        "gan",
        [6387],
        [],
        "GAN trained with one loss via stop-gradients",
        modules=("kexue.gan.losses", "kexue.gan.gan", "kexue.train.phases"),
        tests=(
            "tests/gan/test_gan.py",
            "tests/train/test_phases.py",
            "tests/experiments/test_single_loss_gan.py",
        ),
        reproductions=("single-loss-gan",),
        issue=8,
    ),
    _s(
        23,
        "intermediates-and-ema",
        "training",
        [6575],
        [],
        "capture of intermediate outputs, weight EMA, process-safe data loading",
        modules=("kexue.train.intermediates", "kexue.train.ema", "kexue.data.loader"),
        tests=("tests/train/test_intermediates.py", "tests/train/test_ema.py", "tests/data/test_loader.py"),
        issue=2,
    ),
    _s(
        24,
        "bert4keras",
        "attention",
        [6915],
        [],
        "bert4keras-style builder loading real checkpoints, tokenizer, KV-cache decoding",
        modules=(
            "kexue.models.builder",
            "kexue.models.bert",
            "kexue.models.roformer",
            "kexue.models.gpt2",
            "kexue.models.checkpoint",
            "kexue.text.tokenizer",
            "kexue.nn.decoding",
        ),
        tests=(
            "tests/models/test_bert.py",
            "tests/models/test_roformer.py",
            "tests/models/test_gpt2.py",
            "tests/models/test_builder.py",
            "tests/text/test_tokenizer.py",
            "tests/nn/test_decoding.py",
        ),
        peers=("decoding",),
        issue=6,
    ),
    _s(
        25,
        "discrete-distributions",
        "estimators",
        [9085],
        [],
        "the post's constructions of discrete distributions from perturbations",
        modules=("kexue.estimators.perturbation",),
        tests=("tests/estimators/test_perturbation.py",),
        reproductions=("discrete-distributions",),
        issue=7,
    ),
    _s(
        26,
        "dictionary-segmenter",
        "text",
        [4245],
        [3924, 4195],
        "Chinese word segmentation trained from a dictionary alone",
        modules=(
            "kexue.text.segment.maxprob",
            "kexue.text.segment.em",
            "kexue.text.segment.tagger",
            "kexue.text.segment.viterbi",
            "kexue.text.segment.score",
        ),
        tests=(
            "tests/text/segment/test_maxprob.py",
            "tests/text/segment/test_viterbi.py",
            "tests/text/segment/test_score.py",
            "tests/text/segment/test_tagger.py",
        ),
        reproductions=("segmentation",),
        peers=("segment",),
        issue=10,
    ),
    _s(
        27,
        "series-convergence",
        "math",
        [1990],
        [],
        "a math note, not a system (listed so the map is complete)",
        note="a math note (the p-series comparison test), not a system: listed so the map is complete",
        issue=2,
    ),
    _s(
        28,
        "ddim",
        "diffusion",
        [9181],
        [],
        "DDIM with η, σ̂, sub-trajectories, inversion",
        modules=("kexue.diffusion.ddim", "kexue.diffusion.dpm_solver"),
        tests=("tests/diffusion/test_ddim.py", "tests/diffusion/test_dpm_solver.py"),
        reproductions=("ddim",),
        peers=("samplers",),
        issue=3,
    ),
    _s(
        29,
        "analytic-dpm",
        "diffusion",
        [9245],
        [],
        "Analytic-DPM optimal reverse variance and trajectory",
        modules=("kexue.diffusion.analytic", "kexue.diffusion.likelihood"),
        tests=("tests/diffusion/test_analytic.py", "tests/diffusion/test_likelihood.py"),
        reproductions=("analytic-dpm",),
        note="quick run: the bits/dim claims hold; Analytic-DDIM's FID-proxy is not below DDIM's at K = 10",
        issue=3,
    ),
    _s(
        30,
        "sde-ode",
        "diffusion",
        [9209],
        [9228],
        "VP/VE/sub-VP SDEs, predictor–corrector, probability-flow ODE, exact NLL",
        modules=("kexue.diffusion.sde", "kexue.diffusion.ode_likelihood"),
        tests=("tests/diffusion/test_sde.py", "tests/diffusion/test_ode_likelihood.py"),
        reproductions=("sde-ode",),
        issue=3,
    ),
    _s(
        31,
        "extended-analytic-dpm",
        "diffusion",
        [9246],
        [],
        "NPR-DPM and SN-DPM covariance heads",
        modules=("kexue.diffusion.extended",),
        tests=("tests/diffusion/test_extended.py",),
        reproductions=("extended-analytic-dpm",),
        note="quick run: NPR ≤ Analytic in bits/dim holds; SN's FID-proxy is not below Analytic's at K = 10",
        issue=3,
    ),
    _s(
        32,
        "transformer",
        "attention",
        [4765],
        [],
        "the 2017 Transformer with KV-cache decoding",
        modules=("kexue.nn.attention", "kexue.nn.transformer", "kexue.nn.decoding"),
        tests=(
            "tests/nn/test_attention.py",
            "tests/nn/test_transformer.py",
            "tests/nn/test_decoding.py",
            "tests/experiments/test_transformer.py",
        ),
        reproductions=("transformer",),
        peers=("attention",),
        issue=5,
    ),
    _s(
        33,
        "poetry-vae",
        "vae",
        [5332],
        [],
        "CNN-VAE generating 5-character couplets",
        modules=("kexue.text.poetry.corpus", "kexue.text.poetry.vae", "kexue.text.poetry.api"),
        tests=(
            "tests/text/poetry/test_corpus.py",
            "tests/text/poetry/test_vae.py",
            "tests/experiments/test_poetry_vae.py",
        ),
        reproductions=("poetry-vae",),
        note="quick run (10 files, 3k steps): novelty and ELBO < unigram hold; KL 0.65 and distinct-2 0.05 "
        "fail (the latent is barely used yet); full (30k steps): all four hold",
        issue=7,
    ),
    _s(
        34,
        "flows",
        "flows",
        [5807],
        [5776],
        "NICE, RealNVP, Glow with exact bits/dim",
        modules=(
            "kexue.flows.nice",
            "kexue.flows.realnvp",
            "kexue.flows.glow",
            "kexue.flows.multiscale",
            "kexue.flows.density",
        ),
        tests=("tests/flows/test_layers.py", "tests/flows/test_models.py"),
        reproductions=("flows",),
        peers=("flows",),
        issue=9,
    ),
    _s(
        35,
        "seq2seq-titles",
        "text",
        [5861],
        [],
        "title generation: LSTM + attention + copy prior, and UniLM",
        modules=(
            "kexue.text.titles.data",
            "kexue.text.titles.lstm",
            "kexue.text.titles.unilm",
            "kexue.text.titles.bert_unilm",
            "kexue.text.titles.api",
            "kexue.metrics.rouge_bleu",
        ),
        tests=(
            "tests/text/titles/test_data.py",
            "tests/text/titles/test_lstm.py",
            "tests/text/titles/test_unilm.py",
            "tests/text/titles/test_bert_unilm.py",
            "tests/metrics/test_rouge_bleu.py",
            "tests/experiments/test_titles.py",
        ),
        reproductions=("titles",),
        note="quick run: the copy prior is ahead (ROUGE-L 10.5 vs 9.5) but within seed noise; titles weak",
        issue=6,
    ),
    _s(
        36,
        "custom-optimizers",
        "training",
        [5879],
        [],
        "optimizer wrappers (decay, piecewise LR, accumulation, lookahead, lazy, EMA, per-parameter LR)",
        modules=("kexue.train.optimizers", "kexue.train.lr_schedule", "kexue.train.embedding_adversarial"),
        tests=(
            "tests/train/test_optimizers.py",
            "tests/train/test_lr_schedule.py",
            "tests/train/test_embedding_adversarial.py",
        ),
        issue=6,
    ),
    _s(
        37,
        "optimizer-dynamics",
        "training",
        [6234],
        [5655],
        "optimizers as discretised ODEs (SGD, momentum, RMSprop/Adam)",
        modules=("kexue.experiments.optimizer_ode",),
        tests=("tests/experiments/test_optimizer_ode.py",),
        reproductions=("optimizer-ode",),
        issue=6,
    ),
    _s(
        38,
        "lipschitz",
        "gan",
        [6051],
        [],
        "spectral normalisation, gradient penalty, Lipschitz regularisation for generalisation",
        modules=("kexue.nn.lipschitz",),
        tests=("tests/nn/test_lipschitz.py",),
        reproductions=("lipschitz",),
        issue=8,
    ),
)


def status_text(s: System) -> str:
    """One cell: the set flags joined by ' · ', or the note's short form, or 'planned'."""
    on = [k for k, v in s.flags.items() if v]
    if s.note and not on:
        return "note"
    return " · ".join(on) if on else "planned"


def markdown_table() -> str:
    """The README's feature table, generated from SYSTEMS (tests check the README matches it)."""
    lines = [
        "| id | system | family | post | implemented | tested | reproduced | peer | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    mark = {True: "✓", False: ""}
    for s in SYSTEMS:
        f = s.flags
        post = f"[{s.posts[0]}]({s.url})"
        notes = s.note or (
            f"`kexue reproduce {', '.join(s.reproductions)}`"
            if s.reproductions
            else ("" if any(f.values()) else f"planned (issue #{s.issue})")
        )
        lines.append(
            f"| {s.id} | {s.name} | {s.family} | {post} | {mark[f['implemented']]} | {mark[f['tested']]} "
            f"| {mark[f['reproduced']]} | {mark[f['peer']]} | {notes} |"
        )
    return "\n".join(lines)


__all__ = ["SYSTEMS", "System", "markdown_table", "status_text"]
