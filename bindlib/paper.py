"""Numbers reported by the paper, kept in one place so charts can label them as the paper's.

These are the only typed-in numbers in the book. Each carries its source:
"paper" = the abstract or an official listing; "summary" = detailed secondary
summaries of the full text (likely right, unverified). See SPEC §1.
"""

PAPER = "Buzeta et al. 2026, 'Seeing to Generalize: How Visual Data Corrects Binding Shortcuts', arXiv 2602.15183"

# Text-only OOD accuracy (N > 8, text modality, averaged over N), per training regime.
OOD_ACCURACY = {
    "text_only": {"value": 0.372, "source": "paper"},
    "noise_text": {"value": 0.575, "source": "summary"},
    "image_text": {"value": 0.695, "source": "paper"},
    "noise_image_text": {"value": 0.836, "source": "summary"},
}

# In-distribution accuracy of the text-only model: "~100%" in the abstract.
TEXT_ONLY_ID_ACCURACY = {"value": 1.0, "source": "paper", "approximate": True}

# The final vocabulary after the curriculum's expansion stage.
VOCABULARY = {"n_colors": 216, "n_shapes": 216, "n_items": 32, "source": "summary"}

ARCHITECTURE = {"n_layers": 12, "d_model": 128, "n_heads": 4, "d_ff": 512, "source": "summary"}


def paper_value(regime: str) -> float:
    if regime not in OOD_ACCURACY:
        raise ValueError(f"the paper reports no OOD accuracy for regime {regime!r}; known: {sorted(OOD_ACCURACY)}.")
    return OOD_ACCURACY[regime]["value"]
