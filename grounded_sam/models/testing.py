"""Randomly initialised models from the real architectures, saved in the real on-disk layouts.

No real weights can be downloaded in CI, so tests and smoke benchmarks build these and load them
through the real loaders (:mod:`grounded_sam.models.loading`). Presets:

* ``tiny``: seconds to build and run on a CPU; for tests.
* real sizes, for timing the real compute cost when real weights are absent: Florence-2 ``base`` /
  ``large``, SAM2.1 ``base-plus``, Grounding DINO ``swin-t`` / ``swin-b`` (``grounding-dino-tiny`` /
  ``-base``), OWLv2 ``base`` (``owlv2-base-patch16-ensemble``) and SAM 3 ``base`` (``facebook/sam3``).
  Their tokenizers are the tiny test ones: text costs as much as the prompts' token counts make it.

Random weights give arbitrary boxes; tests that need known boxes constrain Florence-2's
generation (``prefix_allowed_tokens_fn``), or build a *scripted* Florence-2 whose decoder emits a
fixed text (:func:`scripted_text`, :data:`SCRIPTED_TEXT`) for every prompt, and then run the real
SAM2. :func:`build_test_models` builds the set the tests, the memory script and the app's test
server share.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

FlorencePreset = Literal["tiny", "base", "large"]
Sam2Preset = Literal["tiny", "base-plus"]
GroundingDinoPreset = Literal["tiny", "swin-t", "swin-b"]
Owlv2Preset = Literal["tiny", "base"]

#: Two boxes every prompt of the scripted test detector finds: (x1, y1, x2, y2) Florence-2 location bins.
SCRIPTED_BINS: tuple[tuple[int, int, int, int], ...] = ((100, 150, 450, 700), (550, 300, 900, 850))


def scripted_text(bins: tuple[tuple[int, int, int, int], ...] = SCRIPTED_BINS, phrase: str = "object") -> str:
    """Florence-2 output text naming ``phrase`` once, then four location tokens per box of ``bins``."""
    return phrase + "".join(f"<loc_{v}>" for box in bins for v in box)


#: What the scripted test detector emits for every prompt.
SCRIPTED_TEXT = scripted_text()

#: The logit the scripted tiny OWLv2 gives every (box, prompt): every box scores sigmoid(2.0) = 0.8808.
SCRIPTED_OWLV2_LOGIT = 2.0
#: The score logit of every instance of the scripted tiny SAM 3, whose presence logit is 10.
SCRIPTED_SAM3_LOGIT = 2.0
#: What every instance of the scripted tiny SAM 3 scores: sigmoid(2.0) * sigmoid(10.0).
SCRIPTED_SAM3_SCORE = 1 / (1 + math.exp(-SCRIPTED_SAM3_LOGIT)) / (1 + math.exp(-10.0))

# Florence-2's extra vocabulary: 1000 location bins, the task/structure tokens, and <image>.
FLORENCE_TASK_TOKENS = (
    "<od>", "</od>", "<ocr>", "</ocr>", "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>",
    "<grounding>", "</grounding>", "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>",
    "<region_to_desciption>", "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>",
)
_CORPUS = (
    "Locate the phrases in the caption: Locate the in the image. What does the image describe? "
    "Locate the objects with category name in the image. person helmet forklift truck tire car cars wheel "
    "window door road building tree sky dog cat bottle apple banana orange box bag shelf groceries "
    "yellow hard hat red blue green white black big small left right people bicycle bus sign light"
)


def build_tokenizer(vocab_size: int = 600):
    """A byte-level BPE tokenizer carrying Florence-2's special tokens (``<loc_0>``..``<loc_999>``, tasks, ``<image>``).

    Returns:
        A ``transformers`` BART (RoBERTa-style) tokenizer with ``image_token`` set.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator([_CORPUS] * 4, vocab_size=vocab_size, min_frequency=1, special_tokens=specials, show_progress=False)
    model = trainer.get_vocab()
    merges = _merges_of(trainer)
    tokenizer = RobertaTokenizer(vocab=model, merges=merges, extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens(list(FLORENCE_TASK_TOKENS) + [f"<loc_{i}>" for i in range(1000)], special_tokens=True)
    return tokenizer


def _merges_of(trainer) -> list[tuple[str, str]]:
    import json

    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
            for m in json.loads(trainer.to_str())["model"]["merges"]]


def build_random_florence2(
    out_dir: str | os.PathLike[str], preset: FlorencePreset = "tiny", seed: int = 0, scripted_output: str | None = None
) -> Path:
    """Writes a random Florence-2 (model + processor) with ``save_pretrained`` into ``out_dir``.

    Args:
        out_dir: Folder to write.
        preset: ``tiny`` (tests), ``base`` or ``large`` (Florence-2-base / -large shapes).
        seed: Seed of the random initialisation.
        scripted_output: If given, the decoder's weights are set so that it generates exactly this
            text (e.g. ``"object<loc_10><loc_20><loc_500><loc_600>"``) for every prompt and image,
            through the ordinary ``generate`` path: see :func:`script_florence2_output`.

    Returns:
        ``out_dir`` as a Path; load it with ``FlorenceDetector.from_pretrained`` or by path.
    """
    import torch
    from transformers import (
        BartConfig,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    out = Path(out_dir)
    tokenizer = build_tokenizer()
    if preset == "tiny":
        image_size, d_model, layers, heads, ffn = 64, 32, 1, 2, 64
        vision = dict(depths=[1, 1, 1, 1], embed_dim=[8, 16, 32, 64], num_heads=[1, 1, 2, 4], num_groups=[1, 1, 2, 4],
                      window_size=2, projection_dim=d_model, drop_path_rate=0.0, max_position_embeddings=8)
        vocab_size = len(tokenizer)
    elif preset == "base":
        image_size, d_model, layers, heads, ffn = 768, 768, 6, 12, 3072
        vision = dict(depths=[1, 1, 9, 1], embed_dim=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32],
                      num_groups=[4, 8, 16, 32], window_size=12, projection_dim=d_model, drop_path_rate=0.0)
        vocab_size = max(51289, len(tokenizer))
    elif preset == "large":
        image_size, d_model, layers, heads, ffn = 768, 1024, 12, 16, 4096
        vision = dict(depths=[1, 1, 9, 1], embed_dim=[256, 512, 1024, 2048], num_heads=[8, 16, 32, 64],
                      num_groups=[8, 16, 32, 64], window_size=12, projection_dim=d_model, drop_path_rate=0.0)
        vocab_size = max(51289, len(tokenizer))
    else:
        raise ValueError(f"preset must be 'tiny', 'base' or 'large', but got {preset!r}")
    grid = image_size // 32
    text = BartConfig(
        vocab_size=vocab_size, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id, scale_embedding=False,
    )
    config = Florence2Config(text_config=text.to_dict(), vision_config=vision, image_token_id=tokenizer.image_token_id)
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    if scripted_output is not None:
        script_florence2_output(model, tokenizer, scripted_output, seed=seed)
    image_processor = CLIPImageProcessor(
        size={"height": image_size, "width": image_size}, crop_size={"height": image_size, "width": image_size},
        do_center_crop=False, image_seq_length=grid * grid + 1, do_convert_rgb=True,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )
    # Real checkpoints ship the post-processor's task table; keep it so processor.post_process_generation works.
    post_processor_config = {"phrase_grounding": {}, "description_with_bboxes": {}, "pure_text": {}}
    processor = Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=post_processor_config
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    logger.info("Wrote a random %s Florence-2 to %s", preset, out)
    return out


def script_florence2_output(model, tokenizer, text: str, seed: int = 0) -> None:
    """Sets a Florence-2's decoder weights so that it always generates ``<s>text</s>``.

    The decoder's attention and feed-forward outputs are zeroed, so each step's hidden state is
    the layer-normed sum of its input token's embedding and its position embedding. Token
    embeddings (tied with the LM head) become random unit directions of equal norm, and the
    position embedding of step ``t`` points, ten times stronger, at the ``t``-th target token: the
    LM head then ranks that token first at every step, greedy or beam search alike. The vision
    tower and the encoder keep their random weights and still run at full cost.

    Args:
        model: A ``Florence2ForConditionalGeneration`` (modified in place).
        tokenizer: Its tokenizer.
        text: What to generate, location tokens included.
        seed: Seed of the embedding directions.
    """
    import torch

    target = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    language_model = model.model.language_model
    decoder = language_model.decoder
    positions = decoder.embed_positions
    if len(target) > positions.weight.shape[0] - positions.offset:
        raise ValueError(f"The scripted output is {len(target)} tokens; the decoder has only {positions.weight.shape[0]} positions.")
    with torch.no_grad():
        embeddings = language_model.shared.weight
        generator = torch.Generator().manual_seed(seed)
        directions = torch.randn(embeddings.shape, generator=generator)
        directions -= directions.mean(dim=1, keepdim=True)  # LayerNorm removes the mean anyway
        directions /= directions.norm(dim=1, keepdim=True)
        embeddings.copy_(directions * 0.1)
        for layer in decoder.layers:
            for linear in (layer.self_attn.out_proj, layer.encoder_attn.out_proj, layer.fc2):
                linear.weight.zero_()
                linear.bias.zero_()
        positions.weight.zero_()
        for step in range(positions.weight.shape[0] - positions.offset):
            token = target[step] if step < len(target) else tokenizer.eos_token_id
            positions.weight[step + positions.offset] = directions[token] * 10.0


# Grounding DINO finds its phrase separators by bert-base-uncased's token ids (transformers'
# SPECIAL_TOKENS: [CLS] 101, [SEP] 102, "." 1012, "?" 1029, [PAD] 0), so the tiny vocabulary keeps them.
_BERT_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}


def build_bert_tokenizer():
    """A word-piece tokenizer for Grounding DINO: the corpus's words and letters, bert-base-uncased's special ids."""
    from transformers import BertTokenizer

    words = sorted(set(_CORPUS.lower().replace(".", " ").replace("?", " ").replace(":", " ").split()))
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    fillers = iter(list(letters) + [f"##{c}" for c in letters] + words)
    vocab: list[str] = []
    special = {index: token for token, index in _BERT_IDS.items()}
    for index in range(max(_BERT_IDS.values()) + 1):
        vocab.append(special.get(index) or next(fillers, None) or f"[unused{index}]")
    vocab.extend(fillers)
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)


def build_random_grounding_dino(out_dir: str | os.PathLike[str], seed: int = 0,
                                preset: GroundingDinoPreset = "tiny") -> Path:
    """Writes a random Grounding DINO (model + processor) with ``save_pretrained`` into ``out_dir``.

    The real architecture (Swin backbone, BERT text encoder, deformable encoder and decoder). ``tiny``:
    tiny widths and 10 queries, so at most 10 boxes per text query. ``swin-t`` / ``swin-b``: the sizes of
    ``grounding-dino-tiny`` / ``-base`` (900 queries, 800-pixel shortest edge).

    Returns:
        ``out_dir`` as a Path; load it with ``GroundingDinoDetector.from_pretrained`` or by path.
    """
    import torch
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    out = Path(out_dir)
    tokenizer = build_bert_tokenizer()
    if preset == "tiny":
        backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                              window_size=2, out_indices=[2, 3, 4])
        text = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=1,
                          intermediate_size=32, max_position_embeddings=300)
        # Two decoder layers: transformers ties the box heads of layers 1.. to layer 0's, which needs a layer 1.
        config = GroundingDinoConfig(
            backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
            encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
            num_queries=10, encoder_n_points=1, decoder_n_points=1,
        )
        size = {"shortest_edge": 64, "longest_edge": 96}
    elif preset in ("swin-t", "swin-b"):
        swin = (dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, image_size=224)
                if preset == "swin-t" else
                dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12, image_size=384))
        text = BertConfig(vocab_size=max(30522, len(tokenizer)))  # bert-base-uncased
        config = GroundingDinoConfig(backbone_config=SwinConfig(out_indices=[2, 3, 4], **swin), text_config=text)
        size = {"shortest_edge": 800, "longest_edge": 1333}
    else:
        raise ValueError(f"preset must be 'tiny', 'swin-t' or 'swin-b', but got {preset!r}")
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(size=size), tokenizer=tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    logger.info("Wrote a random %s Grounding DINO to %s", preset, out)
    return out


def build_clip_tokenizer():
    """A BPE tokenizer in CLIP's format (letters, ``</w>`` word ends and the corpus's words), for OWLv2."""
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz0123456789.,:-'"
    vocab: dict[str, int] = {}
    for token in [*letters, *(c + "</w>" for c in letters), "<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in sorted(set(_CORPUS.lower().split())):
        if not word.isalpha() or len(word) < 2:
            continue
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:  # merge left to right: ("t", "r"), ("tr", "u"), ...
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
            pieces = [pair[0] + pair[1], *pieces[2:]]
            vocab.setdefault(pieces[0], len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges)


def build_random_owlv2(out_dir: str | os.PathLike[str], seed: int = 0, scripted_logit: float | None = None,
                       preset: Owlv2Preset = "tiny") -> Path:
    """Writes a random OWLv2 (model + processor) with ``save_pretrained`` into ``out_dir``.

    ``tiny``: a 64-pixel image in 16-pixel patches, 16 patch boxes per image. ``base``: the sizes of
    ``owlv2-base-patch16-ensemble`` (a 960-pixel image in 16-pixel patches, 3600 boxes).

    Args:
        out_dir: Folder to write.
        seed: Seed of the random initialisation.
        scripted_logit: If given, the class head gives every (box, prompt) this logit (so every box
            scores ``sigmoid(scripted_logit)`` and goes to the first prompt), and the box head adds
            nothing to its grid bias (each box is its patch's default box, ``sigmoid(model.box_bias)``).

    Returns:
        ``out_dir`` as a Path; load it with ``Owlv2Detector.from_pretrained`` or by path.
    """
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    out = Path(out_dir)
    tokenizer = build_clip_tokenizer()
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if preset == "tiny":
        config = Owlv2Config(
            text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=16, **ids),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                               image_size=64, patch_size=16),
            projection_dim=32,
        )
    elif preset == "base":  # transformers' defaults are the base sizes, but a 768-pixel image
        config = Owlv2Config(text_config=dict(vocab_size=max(49408, len(tokenizer)), **ids),
                             vision_config=dict(image_size=960, patch_size=16))
    else:
        raise ValueError(f"preset must be 'tiny' or 'base', but got {preset!r}")
    image_size = config.vision_config.image_size
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    if scripted_logit is not None:
        with torch.no_grad():
            head = model.class_head
            for linear in (head.dense0, head.logit_shift, head.logit_scale, model.box_head.dense2):
                linear.weight.zero_()
                linear.bias.zero_()
            head.logit_shift.bias.fill_(scripted_logit)  # logits = (0 + shift) * (elu(0) + 1) = shift
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": image_size, "width": image_size}),
                               tokenizer=tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    logger.info("Wrote a random %s OWLv2 to %s", preset, out)
    return out


Sam3Preset = Literal["tiny", "base"]


def sam3_config(preset: Sam3Preset = "tiny", tokenizer=None):
    """A ``Sam3VideoConfig``: SAM 3's detector and its click tracker, as the ``facebook/sam3`` checkpoint holds them.

    Args:
        preset: ``tiny`` (56-pixel images in 14-pixel patches, one layer per stage, 10 queries, widths of 32)
            or ``base`` (transformers' defaults, which are ``facebook/sam3``'s sizes).
        tokenizer: The tokenizer the text config takes its special ids from (default :func:`build_clip_tokenizer`).
    """
    from transformers import Sam3Config, Sam3VideoConfig

    tokenizer = tokenizer or build_clip_tokenizer()
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if preset == "base":
        # Sam3Config's own text defaults (a 24-layer encoder), not CLIPTextConfig's, with the tokenizer's ids.
        text = {**Sam3Config().text_config.to_dict(), "vocab_size": max(49408, len(tokenizer)), **ids}
        config = Sam3VideoConfig(detector_config=dict(text_config=text))
    elif preset == "tiny":
        vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, image_size=56, patch_size=14, window_size=2, global_attn_indexes=[1],
                   pretrain_image_size=28)
        vision = dict(backbone_config=vit, fpn_hidden_size=32, backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]])
        small = dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64)
        detector = dict(
            vision_config=vision,
            text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=32, projection_dim=32, **ids),
            geometry_encoder_config=small, detr_encoder_config=small, detr_decoder_config=dict(small, num_queries=10),
            mask_decoder_config=dict(hidden_size=32, num_attention_heads=2),
        )
        # The tracker reads the detector's ViT through its own neck (the checkpoint's tracker_neck).
        tracker = dict(
            vision_config=vision, prompt_encoder_config=dict(hidden_size=32, patch_size=14),
            mask_decoder_config=dict(hidden_size=32, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32),
            memory_attention_hidden_size=32, memory_attention_num_layers=1,
            memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[4, 4],
            memory_encoder_hidden_size=32, memory_encoder_output_channels=16, mask_downsampler_embed_dim=32,
            memory_fuser_embed_dim=32, memory_fuser_intermediate_dim=64, memory_fuser_num_layers=1,
        )
        config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker)
        config.image_size = 56  # also sets the tracker's prompt encoder, which defaults to 1008
    else:
        raise ValueError(f"preset must be 'tiny' or 'base', but got {preset!r}")
    config.architectures = ["Sam3VideoModel"]
    return config


def build_random_sam3(out_dir: str | os.PathLike[str], seed: int = 0, scripted_logit: float | None = None,
                      preset: Sam3Preset = "tiny") -> Path:
    """Writes a random SAM 3 in ``facebook/sam3``'s layout into ``out_dir``: one checkpoint, two models.

    Like the hub's, the folder holds a ``sam3_video`` config and one ``model.safetensors`` with the
    detector (``detector_model.*``), the tracker (``tracker_model.*``) and the tracker's neck on the
    shared ViT (``tracker_neck.*``), plus a ``Sam3VideoProcessor``. ``Sam3Model`` (text -> masks)
    and ``Sam3TrackerModel`` (clicks -> a mask) both load from it with ``from_pretrained``.

    Args:
        out_dir: Folder to write.
        seed: Seed of the random initialisation.
        scripted_logit: If given, every query of every prompt gets this score logit (the scoring
            projections give constant vectors) and the presence head says "present" (logit 10), so every
            instance scores ``sigmoid(scripted_logit) * sigmoid(10)``.
        preset: ``tiny`` (tests) or ``base`` (``facebook/sam3``'s sizes, for the benchmark); see :func:`sam3_config`.

    Returns:
        ``out_dir`` as a Path; load it with ``Sam3Segmenter.from_pretrained`` or by path.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import Sam3ImageProcessor, Sam3VideoModel, Sam3VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    out = Path(out_dir)
    tokenizer = build_clip_tokenizer()
    config = sam3_config(preset, tokenizer)
    torch.manual_seed(seed)
    model = Sam3VideoModel(config).eval()
    if scripted_logit is not None:
        detector = model.detector_model
        with torch.no_grad():
            scoring, presence = detector.dot_product_scoring, detector.detr_decoder.presence_head.layer3
            for linear in (scoring.text_proj, scoring.query_proj, presence):
                linear.weight.zero_()
                linear.bias.zero_()
            # (a e0) . (a e0) * scale = scripted_logit
            scoring.text_proj.bias[0] = scoring.query_proj.bias[0] = (scripted_logit / scoring.scale) ** 0.5
            presence.bias.fill_(10.0)
    size = config.image_size
    processor = Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(size={"height": size, "width": size}),
        video_processor=Sam2VideoVideoProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                                size={"height": size, "width": size}),
        tokenizer=tokenizer,
    )
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    # The module's own parameter names are the hub checkpoint's; save_pretrained would write the tracker's
    # twice prefixed (tracker_model.tracker_model.*), which no loader reads.
    save_file({name: tensor.detach().contiguous().clone() for name, tensor in model.state_dict().items()},
              str(out / "model.safetensors"), metadata={"format": "pt"})
    processor.save_pretrained(out)
    logger.info("Wrote a random %s SAM 3 (detector and tracker) to %s", preset, out)
    return out


def _tiny_sam2_yaml() -> str:
    """A small SAM2.1 model config: real architecture, image size 1024, a few thousand parameters per block."""
    return """\
# Tiny random SAM2.1 for tests: the real classes, small widths. Image size stays 1024.
model:
  _target_: sam2.modeling.sam2_base.SAM2Base
  image_encoder:
    _target_: sam2.modeling.backbones.image_encoder.ImageEncoder
    scalp: 1
    trunk:
      _target_: sam2.modeling.backbones.hieradet.Hiera
      embed_dim: 8
      num_heads: 1
      stages: [1, 2, 1, 1]
      global_att_blocks: [2]  # block 2 is inside stage 2, never a stage's first block
      window_pos_embed_bkg_spatial_size: [7, 7]
    neck:
      _target_: sam2.modeling.backbones.image_encoder.FpnNeck
      position_encoding:
        _target_: sam2.modeling.position_encoding.PositionEmbeddingSine
        num_pos_feats: 32
        normalize: true
        scale: null
        temperature: 10000
      d_model: 32
      backbone_channel_list: [64, 32, 16, 8]
      fpn_top_down_levels: [2, 3]
      fpn_interp_model: nearest
  memory_attention:
    _target_: sam2.modeling.memory_attention.MemoryAttention
    d_model: 32
    pos_enc_at_input: true
    layer:
      _target_: sam2.modeling.memory_attention.MemoryAttentionLayer
      activation: relu
      dim_feedforward: 64
      dropout: 0.1
      pos_enc_at_attn: false
      self_attention:
        _target_: sam2.modeling.sam.transformer.RoPEAttention
        rope_theta: 10000.0
        feat_sizes: [64, 64]
        embedding_dim: 32
        num_heads: 1
        downsample_rate: 1
        dropout: 0.1
      d_model: 32
      pos_enc_at_cross_attn_keys: true
      pos_enc_at_cross_attn_queries: false
      cross_attention:
        _target_: sam2.modeling.sam.transformer.RoPEAttention
        rope_theta: 10000.0
        feat_sizes: [64, 64]
        rope_k_repeat: true
        embedding_dim: 32
        num_heads: 1
        downsample_rate: 1
        dropout: 0.1
        kv_in_dim: 16
    num_layers: 1
  memory_encoder:
    _target_: sam2.modeling.memory_encoder.MemoryEncoder
    out_dim: 16
    in_dim: 32
    position_encoding:
      _target_: sam2.modeling.position_encoding.PositionEmbeddingSine
      num_pos_feats: 16
      normalize: true
      scale: null
      temperature: 10000
    mask_downsampler:
      _target_: sam2.modeling.memory_encoder.MaskDownSampler
      kernel_size: 3
      stride: 2
      padding: 1
      embed_dim: 32
    fuser:
      _target_: sam2.modeling.memory_encoder.Fuser
      layer:
        _target_: sam2.modeling.memory_encoder.CXBlock
        dim: 32
        kernel_size: 7
        padding: 3
        layer_scale_init_value: 1e-6
        use_dwconv: true
      num_layers: 1
  num_maskmem: 7
  image_size: 1024
  sigmoid_scale_for_mem_enc: 20.0
  sigmoid_bias_for_mem_enc: -10.0
  use_mask_input_as_output_without_sam: true
  directly_add_no_mem_embed: true
  no_obj_embed_spatial: true
  use_high_res_features_in_sam: true
  multimask_output_in_sam: true
  iou_prediction_use_sigmoid: true
  use_obj_ptrs_in_encoder: true
  add_tpos_enc_to_obj_ptrs: true
  proj_tpos_enc_in_obj_ptrs: true
  use_signed_tpos_enc_to_obj_ptrs: true
  only_obj_ptrs_in_the_past_for_eval: true
  pred_obj_scores: true
  pred_obj_scores_mlp: true
  fixed_no_obj_ptr: true
  multimask_output_for_tracking: true
  use_multimask_token_for_obj_ptr: true
  multimask_min_pt_num: 0
  multimask_max_pt_num: 1
  use_mlp_for_obj_ptr_proj: true
  compile_image_encoder: false
"""


def build_random_sam2(checkpoint: str | os.PathLike[str], preset: Sam2Preset = "tiny", seed: int = 0) -> Path:
    """Writes a random SAM2.1 checkpoint as Meta publishes it: ``{"model": state_dict}``.

    For ``tiny`` the model config goes beside the checkpoint (same stem, ``.yaml``); for
    ``base-plus`` the checkpoint should be named ``sam2.1_hiera_base_plus.pt`` so its config comes
    from the ``sam2`` package, as for real weights.

    Returns:
        The checkpoint path.
    """
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from grounded_sam.models.weights import sam2_package_config

    path = Path(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    if preset == "tiny":
        config_path = path.with_suffix(".yaml")
        config_path.write_text(_tiny_sam2_yaml())
    elif preset == "base-plus":
        config_path = sam2_package_config("configs/sam2.1/sam2.1_hiera_b+.yaml")
    else:
        raise ValueError(f"preset must be 'tiny' or 'base-plus', but got {preset!r}")
    torch.manual_seed(seed)
    model = instantiate(OmegaConf.load(config_path).model, _recursive_=True)
    torch.save({"model": model.state_dict()}, path)
    logger.info("Wrote a random %s SAM2.1 checkpoint to %s", preset, path)
    return path


def build_test_models(root: str | os.PathLike[str]) -> dict[str, Path]:
    """The tiny test models, built into ``root`` (skipping any already there).

    Returns:
        ``florence`` (random weights), ``florence_scripted`` (emits :data:`SCRIPTED_TEXT` for every
        prompt), ``sam2`` (a ``.pt`` checkpoint with its ``.yaml`` config beside it), ``grounding_dino``
        (random), ``owlv2`` (random), ``owlv2_scripted`` (every box scores ``sigmoid(SCRIPTED_OWLV2_LOGIT)``
        for the first prompt) and ``sam3_scripted`` (every instance scores :data:`SCRIPTED_SAM3_SCORE`; in
        ``facebook/sam3``'s layout, so its tracker refines clicks too).
    """
    root = Path(root)
    paths = {"florence": root / "florence-tiny", "florence_scripted": root / "florence-scripted",
             "sam2": root / "sam2" / "sam2-tiny.pt", "grounding_dino": root / "grounding-dino-tiny",
             "owlv2": root / "owlv2-tiny", "owlv2_scripted": root / "owlv2-scripted", "sam3_scripted": root / "sam3-scripted"}
    if not (paths["sam3_scripted"] / "config.json").is_file():
        build_random_sam3(paths["sam3_scripted"], scripted_logit=SCRIPTED_SAM3_LOGIT)
    if not (paths["grounding_dino"] / "config.json").is_file():
        build_random_grounding_dino(paths["grounding_dino"])
    if not (paths["owlv2"] / "config.json").is_file():
        build_random_owlv2(paths["owlv2"])
    if not (paths["owlv2_scripted"] / "config.json").is_file():
        build_random_owlv2(paths["owlv2_scripted"], scripted_logit=SCRIPTED_OWLV2_LOGIT)
    if not (paths["florence"] / "config.json").is_file():
        build_random_florence2(paths["florence"])
    if not (paths["florence_scripted"] / "config.json").is_file():
        build_random_florence2(paths["florence_scripted"], scripted_output=SCRIPTED_TEXT)
    if not paths["sam2"].is_file():
        build_random_sam2(paths["sam2"])
    return paths
