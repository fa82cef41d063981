"""Which pretrained models chapter 8 compares, and three ways to get one: a local GPU, NDIF, or a clear error.

``PAIRS`` is the one registry: each entry is a text-only LLM and the VLM built on it (or on its
sibling), with the Hugging Face id and revision of each.  Revisions are branch names: a results
file records the commit each one resolved to (``config._commit_hash``).  Where the paper is silent
about which checkpoint it used we chose the instruction-tuned one on BOTH sides, because the VL
models were released only instruction-tuned [choice].

For a VLM, ``load_local`` loads the whole model (its language model cannot run without the
embedding and head it shares) and every prompt is text only: no image token, no pixel values, so the
vision tower is never called and the position ids reduce to ordinary 1-D positions.

``bindlib.pretrained.tiny`` builds the same transformers classes at a tiny random-initialised size.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class ModelSpec:
    hf_id: str
    revision: str
    role: str  # "llm" or "vlm"
    hf_class: str  # transformers class (or the remote-code class)
    params_b: float  # parameters, billions (for memory notes)
    remote_code: bool = False  # needs trust_remote_code (its modeling code is not in transformers)
    language_model_attr: str | None = None  # remote-code VLMs: the attribute holding the language model


@dataclass(frozen=True)
class PairSpec:
    key: str
    llm: ModelSpec
    vlm: ModelSpec
    reported: dict  # the paper's numbers (SPEC §1, [summary]); None where not reported

    def to_dict(self) -> dict:
        return {"key": self.key, "llm": asdict(self.llm), "vlm": asdict(self.vlm), "reported": self.reported}


PAIRS = {
    "qwen2": PairSpec(
        "qwen2",
        ModelSpec("Qwen/Qwen2-7B-Instruct", "main", "llm", "Qwen2ForCausalLM", 7.6),
        ModelSpec("Qwen/Qwen2-VL-7B-Instruct", "main", "vlm", "Qwen2VLForConditionalGeneration", 8.3),
        {"peak_layer": 22, "sym_pos_llm": 1.383, "sym_pos_vlm": 1.499}),
    "qwen2.5": PairSpec(
        "qwen2.5",
        ModelSpec("Qwen/Qwen2.5-7B-Instruct", "main", "llm", "Qwen2ForCausalLM", 7.6),
        ModelSpec("Qwen/Qwen2.5-VL-7B-Instruct", "main", "vlm", "Qwen2_5_VLForConditionalGeneration", 8.3),
        {"peak_layer": 22, "sym_pos_llm": 1.218, "sym_pos_vlm": 1.282}),
    "qwen3": PairSpec(
        "qwen3",
        ModelSpec("Qwen/Qwen3-8B", "main", "llm", "Qwen3ForCausalLM", 8.2),
        ModelSpec("Qwen/Qwen3-VL-8B-Instruct", "main", "vlm", "Qwen3VLForConditionalGeneration", 8.8),
        {"peak_layer": 28, "sym_pos_llm": 1.819, "sym_pos_vlm": 2.463,
         "retrieval_llm": 0.626, "retrieval_vlm": 0.760}),
    "internlm3": PairSpec(
        "internlm3",
        ModelSpec("internlm/internlm3-8b-instruct", "main", "llm", "InternLM3ForCausalLM", 8.8, remote_code=True),
        # InternVL3-9B is the InternVL3 whose language model is InternLM3-8B-Instruct (the 8B one uses Qwen2.5)
        ModelSpec("OpenGVLab/InternVL3-9B", "main", "vlm", "InternVLChatModel", 9.1, remote_code=True,
                  language_model_attr="language_model"),
        {"peak_layer": None, "sym_pos_llm": None, "sym_pos_vlm": None}),
}


def pair(key: str) -> PairSpec:
    if key not in PAIRS:
        raise ValueError(f"unknown pair {key!r}: choose one of {', '.join(PAIRS)}.")
    return PAIRS[key]


class WeightsUnavailable(RuntimeError):
    """The weights are not on this machine and cannot be downloaded here."""


def fetch_hint(spec: ModelSpec) -> str:
    return (f"`huggingface-cli download {spec.hf_id} --revision {spec.revision}` on a machine with internet "
            f"(then copy ~/.cache/huggingface), or run on NDIF with --remote")


def snapshot(spec: ModelSpec, allow_download: bool = True) -> str:
    """The local folder of ``spec``'s weights, downloading them only if allowed and online."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(spec.hf_id, revision=spec.revision, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if not allow_download or offline:
        raise WeightsUnavailable(f"{spec.hf_id} (revision {spec.revision}) is not in the Hugging Face cache and "
                                 f"downloads are off here; fetch it with {fetch_hint(spec)}.")
    try:
        return snapshot_download(spec.hf_id, revision=spec.revision)
    except Exception as e:
        raise WeightsUnavailable(f"could not download {spec.hf_id} (revision {spec.revision}): "
                                 f"{type(e).__name__}; fetch it with {fetch_hint(spec)}.") from e


def _model_class(spec: ModelSpec):
    import transformers

    if spec.remote_code:
        return transformers.AutoModel if spec.role == "vlm" else transformers.AutoModelForCausalLM
    if not hasattr(transformers, spec.hf_class):
        raise WeightsUnavailable(f"transformers {transformers.__version__} has no {spec.hf_class} (needed for "
                                 f"{spec.hf_id}); upgrade it with `pip install -U transformers`.")
    return getattr(transformers, spec.hf_class)


def load_local(spec: ModelSpec, device="cuda", dtype=torch.bfloat16, allow_download: bool = True):
    """(nnsight LanguageModel, tokenizer, info) for ``spec`` on a local device, in ``dtype``."""
    from transformers import AutoTokenizer

    import importlib.util

    path = snapshot(spec, allow_download)
    kw = {"trust_remote_code": True} if spec.remote_code else {}
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **kw)
    if importlib.util.find_spec("accelerate") is not None:  # straight onto the device: no CPU copy of 16 GB
        model = _model_class(spec).from_pretrained(path, dtype=dtype, device_map={"": str(device)}, **kw).eval()
    else:
        model = _model_class(spec).from_pretrained(path, dtype=dtype, **kw).to(device).eval()
    if spec.language_model_attr:  # remote-code VLM: keep its language model (a causal LM with its own head)
        model = getattr(model, spec.language_model_attr)
    info = {"hf_id": spec.hf_id, "revision": spec.revision, "resolved_commit": os.path.basename(path.rstrip("/")),
            "dtype": str(dtype).replace("torch.", ""), "mode": "local"}
    return wrap(model, tokenizer), tokenizer, info


def load_remote(spec: ModelSpec, api_key: str | None = None):
    """(nnsight model, tokenizer, info) for running ``spec`` on NDIF (``remote=True`` traces).

    Needs the user's NDIF key (argument or NDIF_API_KEY) and a model NDIF hosts (see
    https://nnsight.net/status); only the config and tokenizer are downloaded here, and the model is
    built on the meta device.  A VLM is wrapped as nnsight's image-text-to-text model (the same
    envoy API as LanguageModel) and still gets text-only prompts.
    """
    from nnsight import CONFIG
    from transformers import AutoTokenizer

    key = api_key or os.environ.get("NDIF_API_KEY")
    if not key:
        raise WeightsUnavailable("no NDIF API key: pass --ndif-key or set NDIF_API_KEY (get one at https://login.ndif.us).")
    if spec.language_model_attr:
        raise WeightsUnavailable(f"{spec.hf_id} runs only locally: its remote-code chat model needs pixel values, so "
                                 "its language model cannot be traced on its own through NDIF.")
    CONFIG.API.APIKEY = key
    kw = {"trust_remote_code": True} if spec.remote_code else {}
    tokenizer = AutoTokenizer.from_pretrained(spec.hf_id, revision=spec.revision, use_fast=True, **kw)
    if spec.role == "vlm":
        import warnings

        from nnsight.modeling.transformers import TransformersModel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lm = TransformersModel(spec.hf_id, task="image-text-to-text", processor=tokenizer, tokenizer=tokenizer,
                                   revision=spec.revision, **kw)
    else:
        lm = wrap(spec.hf_id, tokenizer, revision=spec.revision, **kw)
    return lm, tokenizer, {"hf_id": spec.hf_id, "revision": spec.revision, "resolved_commit": None,
                           "dtype": "ndif", "mode": "ndif"}


def wrap(model, tokenizer, **kw):
    """nnsight's LanguageModel around an HF decoder (a loaded module or a hub id)."""
    import warnings

    from nnsight import LanguageModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nnsight 0.8.1 flags LanguageModel as deprecated; its API is what we pin
        return LanguageModel(model, tokenizer=tokenizer, **kw)


# ============================================================== layer access
def text_config(config):
    return getattr(config, "text_config", None) or getattr(config, "llm_config", None) or config


def decoder_layers_path(model) -> str:
    """Dotted path of the decoder-layer ModuleList of the language model (never the vision tower's)."""
    n = text_config(model.config).num_hidden_layers
    found = [name for name, mod in model.named_modules()
             if isinstance(mod, torch.nn.ModuleList) and name.endswith("layers") and len(mod) == n
             and not any(v in name for v in ("vision", "visual", "vit"))]
    if len(found) != 1:
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__} (candidates {found}).")
    return found[0]


def envoy_at(lm, path: str):
    node = lm
    for part in path.split("."):
        node = getattr(node, part)
    return node
