"""Loading settings: clear errors for unavailable attention backends and devices; LoRA attach and merge."""

import pytest
import torch

from mmreward.modeling import LORA_TARGETS, ModelLoadError, ModelSettings, attach_adapter, load_model


def test_flash_attention_needs_cuda(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="needs a CUDA device"):
        load_model(tiny_model_dir, ModelSettings(attn_implementation="flash_attention_2", device="cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_device_without_cuda(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_model(tiny_model_dir, ModelSettings(device="cuda"))


def test_bad_settings_and_folders(tmp_path):
    with pytest.raises(ModelLoadError, match="attn_implementation must be"):
        ModelSettings(attn_implementation="flash")
    with pytest.raises(ModelLoadError, match="not a folder"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ModelLoadError, match="not one of"):
        load_model(tmp_path)


def test_lora_attach_and_merge(tiny_model_dir, tmp_path):
    model, _ = load_model(tiny_model_dir)
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LORA_TARGETS, bias="none")
    peft_model = get_peft_model(model, config)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and "language_model" in n for n in names)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
    # load base + adapter from the adapter folder (base named explicitly), and merged
    adapted, _ = load_model(tmp_path / "adapter", ModelSettings(base_model=str(tiny_model_dir)))
    merged, _ = load_model(tmp_path / "adapter", ModelSettings(base_model=str(tiny_model_dir), merge_lora=True))
    with torch.no_grad():
        assert torch.allclose(adapted(input_ids=ids).logits, want, atol=1e-5)
        assert torch.allclose(merged(input_ids=ids).logits, want, atol=1e-4)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    base, _ = load_model(tiny_model_dir)
    with torch.no_grad():
        assert not torch.allclose(base(input_ids=ids).logits, want, atol=1e-5)
    assert attach_adapter(base, tmp_path / "adapter", merge=True) is not None
