"""The DINOv2 ViT and its converter against transformers' Dinov2Model; the decoders' pieces."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttt_jax.checkpoint.convert_dinov2 import convert_hf_folder, convert_state_dict
from ttt_jax.models.dpt import resize_align_corners
from ttt_jax.models.instance_seg import InstanceSeg, abstract_variables, instance_seg_config
from ttt_jax.models.mask2former import next_attention_mask, sine_position_encoding
from ttt_jax.models.vit import ViT, bicubic_matrix

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_dinov2(tmp_path_factory):
  torch.manual_seed(0)
  cfg = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=56,
                                  patch_size=14, layerscale_value=0.5)
  model = transformers.Dinov2Model(cfg).eval()
  with torch.no_grad():   # move every weight off its initial value (zeros, ones)
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  d = tmp_path_factory.mktemp("dinov2")
  model.save_pretrained(d)
  return d, model


@pytest.mark.parametrize("hw", [(56, 56), (42, 70)], ids=["native-grid", "interpolated-grid"])
def test_converted_vit_matches_transformers(hf_dinov2, hw):
  d, model = hf_dinov2
  params, cfg = convert_hf_folder(d)
  assert cfg.out_layers == (0, 1, 2, 3)
  x = np.random.default_rng(0).normal(size=(2, *hw, 3)).astype(np.float32)
  with torch.no_grad():
    ref = model(torch.from_numpy(x).permute(0, 3, 1, 2), output_hidden_states=True)
  maps, last = jax.jit(ViT(cfg).apply)({"params": params}, jnp.asarray(x))
  np.testing.assert_allclose(np.asarray(last), ref.last_hidden_state.numpy(), atol=1e-4,
                             err_msg="final hidden state differs from transformers")
  for m, layer in zip(maps, cfg.out_layers):   # DINOv2's get_intermediate_layers(norm=True)
    want = model.layernorm(ref.hidden_states[layer + 1])[:, 1:].detach().numpy().reshape(m.shape)
    np.testing.assert_allclose(np.asarray(m), want, atol=1e-4, err_msg=f"layer {layer} map differs")


def test_converter_reads_new_module_names_and_refuses_unknown(hf_dinov2):
  from safetensors.numpy import load_file
  d, model = hf_dinov2
  params, cfg = convert_hf_folder(d)
  sd = {k: v.numpy() for k, v in model.state_dict().items()}   # transformers 5 names (q_proj, ...)
  assert any("q_proj" in k for k in sd)
  new = convert_state_dict(sd, cfg)
  jax.tree.map(np.testing.assert_array_equal, new, params)
  hub = load_file(str(d / "model.safetensors"))
  with pytest.raises(ValueError, match="does not use"):
    convert_state_dict({**hub, "encoder.layer.9.extra.weight": np.zeros(1)}, cfg)
  spec = json.loads((d / "config.json").read_text())
  (d.parent / "swiglu").mkdir(exist_ok=True)
  (d.parent / "swiglu" / "config.json").write_text(json.dumps({**spec, "use_swiglu_ffn": True}))
  (d.parent / "swiglu" / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes())
  with pytest.raises(ValueError, match="use_swiglu_ffn"):
    convert_hf_folder(d.parent / "swiglu")


@pytest.mark.parametrize("n_in,n_out", [(4, 3), (4, 7), (37, 16)])
def test_bicubic_and_align_corners_resizes_match_torch(n_in, n_out):
  x = np.random.default_rng(1).normal(size=(1, 2, n_in, n_in)).astype(np.float32)
  want = torch.nn.functional.interpolate(torch.from_numpy(x), size=(n_out, n_out), mode="bicubic",
                                         align_corners=False).numpy()
  w = bicubic_matrix(n_in, n_out)
  np.testing.assert_allclose(np.einsum("oh,pw,bchw->bcop", w, w, x), want, atol=1e-5)
  want = torch.nn.functional.interpolate(torch.from_numpy(x), size=(n_out, n_out), mode="bilinear",
                                         align_corners=True).numpy()
  got = resize_align_corners(jnp.asarray(x.transpose(0, 2, 3, 1)), n_out, n_out)
  np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), want, atol=1e-4)


def test_sine_encoding_and_attention_mask_rules():
  pe = np.asarray(sine_position_encoding(2, 3, 8))
  # y half: y_embed = (i + 1) / (h + eps) * 2 pi, channels (sin d0, cos d1, sin d2, cos d3), dim_t = 10000^(2 (j//2)/4)
  y = 2 / (2 + 1e-6) * 2 * np.pi
  dim_t = 10000.0 ** (2 * (np.arange(4) // 2) / 4)
  want = [np.sin(y / dim_t[0]), np.cos(y / dim_t[1]), np.sin(y / dim_t[2]), np.cos(y / dim_t[3])]
  np.testing.assert_allclose(pe[1 * 3 + 2, :4], want, atol=1e-5)   # row 1, col 2: y part
  x = 3 / (3 + 1e-6) * 2 * np.pi
  np.testing.assert_allclose(pe[2, 4:], [np.sin(x), np.cos(x), np.sin(x / 100), np.cos(x / 100)], atol=1e-5)
  m = jnp.stack([jnp.full((4, 4), -5.0), jnp.full((4, 4), -5.0).at[:2].set(5.0)])[None]
  allow = np.asarray(next_attention_mask(m, (2, 2)))
  assert allow[0, 0].all(), "a query with an empty mask must attend everywhere"
  np.testing.assert_array_equal(allow[0, 1], [True, True, False, False])


def test_instance_model_shapes_and_paper_student_size():
  cfg = instance_seg_config("tiny", 4, image_size=56)
  # Shapes only: traced, not compiled (the CAST tests run the model).
  out = jax.eval_shape(lambda v, x: InstanceSeg(cfg).apply(v, x), abstract_variables(cfg),
                       jax.ShapeDtypeStruct((2, 56, 56, 3), jnp.float32))
  l = cfg.decoder.num_layers + 1
  assert out["class_LBQK"].shape == (l, 2, cfg.decoder.num_queries, 5)
  assert out["mask_LBQhw"].shape == (l, 2, cfg.decoder.num_queries, 32, 32)   # patch stride / 8
  assert out["embed_BhwE"].shape == (2, 4, 4, cfg.embed_dim)
  small = instance_seg_config("small", 8)
  n = sum(x.size for x in jax.tree.leaves(abstract_variables(small)["params"]))
  enc = sum(x.size for x in jax.tree.leaves(abstract_variables(small)["params"]["encoder"]))
  assert 21e6 < enc < 23e6, f"ViT-S/14 has about 22M parameters, got {enc}"
  assert 45e6 < n < 55e6, f"the paper's student has about 52M parameters, got {n}"
