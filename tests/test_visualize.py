"""Overlays: outlines of truth (green) and prediction (magenta), optionally traced after shrinking to a width."""

import numpy as np
import pytest

from pipeline.visualize import PRED, TRUTH, overlay


def _case(h=200, w=400):
    img = np.full((h, w, 3), 100, np.uint8)
    truth = np.zeros((h, w), bool)
    truth[40:160, 60:190] = True
    pred = np.zeros((h, w), bool)
    pred[50:150, 220:380] = True
    return img, pred, truth


def _has(out, colour):
    return bool((out == np.array(colour, np.uint8)).all(-1).any())


@pytest.mark.parametrize("width, expected_hw", [(None, (200, 400)), (100, (50, 100)), (1000, (200, 400))])
def test_overlay_size_and_outlines(width, expected_hw):
    img, pred, truth = _case()
    out = overlay(img, pred=pred, truth=truth, width=width)
    assert out.shape == (*expected_hw, 3) and out.dtype == np.uint8
    assert _has(out, TRUTH) and _has(out, PRED)
    # outlines follow the masks: the truth box is on the left half, the prediction on the right
    half = out.shape[1] // 2
    assert _has(out[:, :half], TRUTH) and not _has(out[:, half:], TRUTH)
    assert _has(out[:, half:], PRED) and not _has(out[:, :half], PRED)
    # only the outline is drawn: the middle of each box keeps the image
    h, w = out.shape[:2]
    assert (out[h // 2, w * 130 // 400] == 100).all() and (out[h // 2, w * 300 // 400] == 100).all()


def test_float_slice_is_scaled_to_bytes_before_shrinking():
    img = np.linspace(-1, 3, 300 * 600, dtype=np.float32).reshape(300, 600)
    out = overlay(img, pred=img > 2, width=150)
    assert out.shape == (75, 150, 3) and out.dtype == np.uint8 and _has(out, PRED)


def test_mask_of_another_size_is_refused():
    img, pred, _ = _case()
    with pytest.raises(ValueError, match=r"mask shape \(100, 400\) differs from image shape \(200, 400\)"):
        overlay(img, pred=pred[:100], width=100)


def test_overlay_summary_is_the_lossless_png_tensorboard_shows():
    import io

    from PIL import Image

    from pipeline.handlers.overlays import _png_summary

    img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    value = _png_summary("val/overlay/x", img).value[0]
    assert value.tag == "val/overlay/x"
    assert (value.image.height, value.image.width, value.image.colorspace) == (30, 40, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string))), img)


def test_agreeing_outlines_show_both_colours_and_the_legend_names_them():
    from pipeline.visualize import with_legend

    img, _, truth = _case()
    out = overlay(img, pred=truth, truth=truth)  # a perfect prediction: the same outline twice
    assert _has(out, TRUTH) and _has(out, PRED)
    shown = with_legend(out)
    assert shown.shape == (out.shape[0] + 16, out.shape[1], 3) and np.array_equal(shown[:out.shape[0]], out)
    assert _has(shown[out.shape[0]:], TRUTH) and _has(shown[out.shape[0]:], PRED)
    assert not _has(with_legend(out, truth=False)[out.shape[0]:], TRUTH)
