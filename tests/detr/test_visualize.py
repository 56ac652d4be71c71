"""Pictures' tags in a CJK font where class names are Chinese (PIL's default font draws empty boxes
for them). This machine has no CJK font, so the tests make one with fontTools: glyphs for 猫 and 狗
(a square and a triangle), digits, the point and the space."""

import warnings

import numpy as np
import pytest
from PIL import Image

from bertdetr.cli import main
from bertdetr.detr import visualize
from bertdetr.detr.visualize import draw_detections, needs_cjk_font, tag_font
from bertdetr.errors import BertDetrError

CHARS = {" ": "space", ".": "period", "猫": "cat", "狗": "dog", **{str(d): f"digit{d}" for d in range(10)}}


def _font(family: str):
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    order = [".notdef", *CHARS.values()]
    glyphs = {}
    for name in order:
        pen = TTGlyphPen(None)
        if name == "dog":
            pen.moveTo((100, 0)), pen.lineTo((500, 700)), pen.lineTo((900, 0)), pen.closePath()
        elif name != "space":
            pen.moveTo((100, 0)), pen.lineTo((100, 700)), pen.lineTo((900, 700)), pen.lineTo((900, 0)), pen.closePath()
        glyphs[name] = pen.glyph()
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(order)
    fb.setupCharacterMap({ord(c): n for c, n in CHARS.items()})
    fb.setupGlyf(glyphs)
    fb.setupHorizontalMetrics({n: (1000, 0) for n in order})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": family, "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=800, usWinAscent=800, usWinDescent=200)
    fb.setupPost()
    return fb.font


@pytest.fixture
def cjk_font(tmp_path):
    path = tmp_path / "testcjk.ttf"
    _font("Test CJK").save(str(path))
    return path


@pytest.fixture
def machine_fonts(monkeypatch):
    """The fonts this machine appears to have: set by the test (and fontconfig's list out of reach)."""
    def have(*paths):
        monkeypatch.setattr(visualize, "CJK_FONT_FILES", tuple(str(p) for p in paths))
        visualize.find_cjk_font.cache_clear()

    monkeypatch.setattr(visualize.shutil, "which", lambda name: None)
    yield have
    visualize.find_cjk_font.cache_clear()


def _picture(names, **kw):
    image = Image.new("RGB", (400, 400), (255, 255, 255))
    return np.asarray(draw_detections(image, np.array([[40, 60, 300, 300]], np.float32), np.array([0.9], np.float32),
                                      np.array([0]), names, **kw))


def test_which_text_needs_a_cjk_font():
    assert not needs_cjk_font("cat 0.90") and not needs_cjk_font("café 0.50")
    assert all(needs_cjk_font(t) for t in ("猫 0.90", "ねこ", "고양이", "貓"))


def test_chinese_class_names_are_drawn_in_a_cjk_font(cjk_font, machine_fonts):
    machine_fonts(cjk_font.parent / "absent.ttc", cjk_font)
    assert tag_font(["猫 0.90"]).getname()[0] == "Test CJK"
    assert tag_font(["cat 0.90"]).getname() == visualize.ImageFont.load_default().getname()  # Latin: as always
    auto, given = _picture(["猫"]), _picture(["猫"], font=str(cjk_font))
    assert np.array_equal(auto, given)
    machine_fonts()   # no CJK font: a warning that says what to do, the default font's empty boxes
    with pytest.warns(UserWarning, match="apt install fonts-noto-cjk.*--font FILE"):
        tofu = _picture(["猫"])
    assert not np.array_equal(tofu, auto)
    assert not np.array_equal(_picture(["狗"], font=str(cjk_font)), given)   # another glyph, another tag
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _picture(["cat"])                      # Latin names need nothing


def test_a_collection_gives_its_simplified_chinese_face(tmp_path, machine_fonts):
    from fontTools.ttLib.ttCollection import TTCollection

    collection = TTCollection()
    collection.fonts = [_font("Test CJK JP"), _font("Test CJK KR"), _font("Test CJK SC"), _font("Test CJK TC")]
    path = tmp_path / "TestCJK-Regular.ttc"
    collection.save(str(path))
    machine_fonts(path)
    assert tag_font(["猫 0.90"]).getname()[0] == "Test CJK SC"


def test_a_font_that_cannot_be_read_is_named_before_any_work(tmp_path, capsys):
    (tmp_path / "bad.ttf").write_text("not a font")
    with pytest.raises(BertDetrError, match="cannot use .*bad.ttf as the pictures' font"):
        tag_font(["猫"], tmp_path / "bad.ttf")
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    assert main(["detr", "predict", "--checkpoint", str(tmp_path / "ckpt"), str(tmp_path / "a.png"), "--out",
                 str(tmp_path / "out"), "--font", str(tmp_path / "bad.ttf")]) == 2
    assert "cannot use" in capsys.readouterr().err and not (tmp_path / "out").exists()
