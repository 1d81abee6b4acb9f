"""Flax SegFormer against transformers' SegformerForSemanticSegmentation."""
import json

import jax
import numpy as np
import pytest

from ttt_jax.checkpoint.convert_segformer import convert_hf_folder
from ttt_jax.checkpoint.model_io import init_variables, load_model, save_model
from ttt_jax.models.segformer import YSegFormer, segformer_config

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
  torch.manual_seed(0)
  cfg = transformers.SegformerConfig(
      hidden_sizes=[8, 16, 24, 32], depths=[1, 2, 1, 1], num_attention_heads=[1, 2, 2, 4],
      decoder_hidden_size=16, num_labels=5)
  model = transformers.SegformerForSemanticSegmentation(cfg).eval()
  with torch.no_grad():  # non-trivial BatchNorm statistics
    model.decode_head.batch_norm.running_mean.normal_()
    model.decode_head.batch_norm.running_var.uniform_(0.5, 2.0)
  d = tmp_path_factory.mktemp("hf")
  model.save_pretrained(d)
  return d, model


def test_logits_match_transformers(hf_folder):
  d, model = hf_folder
  variables, cfg = convert_hf_folder(d)
  x = np.random.default_rng(0).normal(size=(2, 3, 64, 96)).astype(np.float32)
  with torch.no_grad():
    ref = model(pixel_values=torch.from_numpy(x)).logits.numpy().transpose(0, 2, 3, 1)
  x4 = np.concatenate([x.transpose(0, 2, 3, 1), np.zeros((2, 64, 96, 1), np.float32)], -1)
  out = np.asarray(YSegFormer(cfg).apply(variables, x4, method="segment"))
  assert out.shape == ref.shape == (2, 16, 24, 5)
  np.testing.assert_allclose(out, ref, atol=1e-4)
  # Mask-channel weights start at zero: a masked-pixel flag alone changes nothing yet.
  assert np.all(variables["params"]["encoder"]["patch_embed0"]["kernel"][:, :, 3] == 0)


def test_cli_convert_then_predict(hf_folder, tmp_path):
  from ttt_jax.cli.main import main
  d, model = hf_folder
  assert main(["convert", "segformer", str(d), str(tmp_path / "m")]) == 0
  frames = np.random.default_rng(1).integers(0, 256, (3, 32, 64, 3), dtype=np.uint8)
  np.save(tmp_path / "f.npy", frames)
  assert main(["predict", "--checkpoint", str(tmp_path / "m"), "--input", str(tmp_path / "f.npy"),
               "--out", str(tmp_path / "l.npy"), "--batch", "2"]) == 0
  logits = np.load(tmp_path / "l.npy")
  assert logits.shape == (3, 8, 16, 5) and logits.dtype == np.float32
  mean = np.array([0.485, 0.456, 0.406]) * 255
  std = np.array([0.229, 0.224, 0.225]) * 255
  x = ((frames - mean) / std).astype(np.float32).transpose(0, 3, 1, 2)
  with torch.no_grad():
    ref = model(pixel_values=torch.from_numpy(x)).logits.numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(logits, ref, atol=1e-4)


def test_predict_rejects_bad_frames(hf_folder, tmp_path):
  from ttt_jax.cli.main import main
  d, _ = hf_folder
  main(["convert", "segformer", str(d), str(tmp_path / "m")])
  np.save(tmp_path / "odd.npy", np.zeros((2, 30, 64, 3), np.uint8))
  assert main(["predict", "--checkpoint", str(tmp_path / "m"), "--input", str(tmp_path / "odd.npy"),
               "--out", str(tmp_path / "o.npy")]) == 2
  assert not (tmp_path / "o.npy").exists()


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
  cfg = segformer_config("tiny", 4)
  v = init_variables(cfg, jax.random.key(0))
  save_model(tmp_path / "m", v, cfg)
  v2, cfg2, _ = load_model(tmp_path / "m")
  assert cfg2 == cfg
  jax.tree.map(np.testing.assert_array_equal, v, v2)
  spec = json.loads((tmp_path / "m" / "model.json").read_text())
  spec["config"]["num_labels"] = 7
  (tmp_path / "m" / "model.json").write_text(json.dumps(spec))
  with pytest.raises(ValueError, match="does not match its config"):
    load_model(tmp_path / "m")
  with pytest.raises(FileNotFoundError, match="no model checkpoint"):
    load_model(tmp_path / "nothing")


def test_remat_changes_neither_parameters_nor_outputs_nor_gradients():
  """Rematerialised encoder blocks: the same parameter tree, loss and gradients
  ('blocks_dots' differs from 'blocks' only in the policy handed to jax.checkpoint)."""
  import dataclasses
  import jax.numpy as jnp
  cfg = segformer_config("tiny", 5, drop_path_rate=0.1)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 4))
  variables = init_variables(cfg, jax.random.key(0))
  outs = {}
  for remat in ("none", "blocks"):
    model = YSegFormer(dataclasses.replace(cfg, remat=remat))
    v2 = jax.eval_shape(lambda: model.init(jax.random.key(0), x))  # traced, not compiled
    assert jax.tree.structure(v2) == jax.tree.structure(variables), remat

    def loss(p):
      y = model.apply({**variables, "params": p}, x, method="reconstruct", drop_path=True,
                      rngs={"dropout": jax.random.key(2)})
      return jnp.mean(y ** 2)
    outs[remat] = jax.jit(jax.value_and_grad(loss))(variables["params"])
  for remat in ("blocks",):
    np.testing.assert_allclose(outs[remat][0], outs["none"][0], rtol=1e-6)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(outs["none"][1]), jax.tree.leaves(outs[remat][1])):
      np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7, err_msg=f"{remat} {jax.tree_util.keystr(path)}")
  with pytest.raises(ValueError, match="remat must be one of"):
    segformer_config("tiny", 5, remat="all")


def test_remat_of_scanned_stages_cuts_the_planned_activation_memory():
  """`remat=blocks` keeps each block's input only, so the compiled loss-and-gradient
  plans fewer temporary bytes (XLA's memory analysis; nothing runs). Scanned stages:
  the CPU compiler drops jax.checkpoint's optimisation barriers before it schedules,
  so unrolled blocks' recomputation may run early and save nothing (README, memory);
  inside the scan's backward loop it cannot."""
  import dataclasses
  import jax.numpy as jnp
  cfg = segformer_config("tiny", 5, depths=(2, 2, 2, 2), scan_blocks=True)
  variables = init_variables(cfg, jax.random.key(0))
  x = jax.ShapeDtypeStruct((2, 64, 64, 4), jnp.float32)
  temp = {}
  for remat in ("none", "blocks"):
    model = YSegFormer(dataclasses.replace(cfg, remat=remat))
    loss = lambda p, x: jnp.mean(model.apply({**variables, "params": p}, x, method="segment") ** 2)
    temp[remat] = jax.jit(jax.grad(loss)).lower(variables["params"], x).compile().memory_analysis().temp_size_in_bytes
  # Measured on the 2-core CPU: 3.81 MB without remat, 1.94 MB with it.
  assert temp["blocks"] < 0.75 * temp["none"], f"remat saved too little: {temp}"


def test_scanned_stages_keep_the_parameters_outputs_and_gradients():
  """`scan_blocks`: each stage's blocks as one lax.scan over stacked per-block parameters.
  Same parameter tree (a checkpoint loads either way), same outputs and gradients without
  stochastic depth (also rematerialised); with it, other draws of the same law: outputs
  change, gradients stay finite and reach every block."""
  import dataclasses
  import jax.numpy as jnp
  cfg = segformer_config("tiny", 5, depths=(1, 1, 3, 1), drop_path_rate=0.2)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 4))
  variables = init_variables(cfg, jax.random.key(0))
  outs = {}
  for scan, remat in ((False, "none"), (True, "none"), (True, "blocks")):
    model = YSegFormer(dataclasses.replace(cfg, scan_blocks=scan, remat=remat))
    v2 = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    assert jax.tree.structure(v2) == jax.tree.structure(variables), (scan, remat)

    def loss(p, drop):
      y = model.apply({**variables, "params": p}, x, method="segment", drop_path=drop,
                      rngs={"dropout": jax.random.key(2)})
      return jnp.mean(y ** 2)
    grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    outs[scan, remat] = grad(variables["params"], False), grad(variables["params"], True) if remat == "none" else None
  (ref, ref_drop) = outs[False, "none"]
  for key in ((True, "none"), (True, "blocks")):
    val, g = outs[key][0]
    np.testing.assert_allclose(val, ref[0], rtol=1e-6, err_msg=str(key))
    # atol: float32 rounding of gradients of order 0.1 (measured differences up to 1.6e-7)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ref[1]), jax.tree.leaves(g)):
      np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=f"{key} {jax.tree_util.keystr(path)}")
  (val, _), (val_drop, g_drop) = outs[True, "none"]
  assert val_drop != val and ref_drop[0] != ref[0], "stochastic depth changed nothing"
  blocks = g_drop["encoder"]
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(blocks))
  for name in ("block2_0", "block2_1", "block2_2"):
    assert any(np.any(leaf != 0) for leaf in jax.tree.leaves(blocks[name])), f"no gradient reaches {name}"
  # No stochastic depth configured (rate 0) but a training pass: no rng asked, same output.
  plain = dataclasses.replace(cfg, drop_path_rate=0.0)
  ys = [YSegFormer(dataclasses.replace(plain, scan_blocks=scan)).apply(
      variables, x, method="segment", drop_path=True) for scan in (False, True)]
  np.testing.assert_allclose(ys[1], ys[0], rtol=1e-5, atol=1e-6)
