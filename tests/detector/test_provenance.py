"""Provenance readers: each kind of metadata built here, read back, and hostile files survived."""

from __future__ import annotations

import io
import random
import time
import zlib

import pytest
from PIL import Image

from detector.provenance import (
    Finding,
    Kind,
    ProvenanceLimits,
    Strength,
    declaring_ai,
    read_provenance,
    summarize,
)
from tests import provenance_files as pf


def only(findings: tuple[Finding, ...], kind: Kind) -> Finding:
    """The single finding of `kind`."""
    matching = [f for f in findings if f.kind is kind]
    assert len(matching) == 1, findings
    return matching[0]


def test_a_plain_photo_says_nothing() -> None:
    findings = read_provenance(pf.jpeg())
    assert findings == ()
    assert summarize(findings) == ""
    assert declaring_ai(findings) is None


@pytest.mark.parametrize("mime", ["image/jpeg", "image/png"])
def test_signed_c2pa_manifest_declaring_ai(mime: str) -> None:
    source = pf.jpeg() if mime == "image/jpeg" else pf.png({})
    findings = read_provenance(pf.c2pa_signed(source, mime, generator="ImageMaker"))
    c2pa = only(findings, Kind.C2PA)
    assert c2pa.strength is Strength.DECLARES_AI
    assert "ImageMaker 1.0" in c2pa.says
    assert "valid signature" in c2pa.says
    assert "created with source type trainedAlgorithmicMedia" in c2pa.says
    assert declaring_ai(findings) == c2pa
    assert "[declares AI]" in summarize(findings)


def test_c2pa_composite_with_ai_declares_ai() -> None:
    signed = pf.c2pa_signed(pf.jpeg(), source_type="compositeWithTrainedAlgorithmicMedia")
    assert only(read_provenance(signed), Kind.C2PA).strength is Strength.DECLARES_AI


def test_c2pa_whose_signature_no_longer_validates_is_only_a_hint() -> None:
    finding = only(read_provenance(pf.tampered(pf.c2pa_signed(pf.jpeg()))), Kind.C2PA)
    assert finding.strength is Strength.HINT
    assert "does not validate" in finding.says


def test_c2pa_camera_capture_is_a_camera_claim() -> None:
    finding = only(
        read_provenance(pf.c2pa_signed(pf.jpeg(), source_type="digitalCapture")), Kind.C2PA
    )
    assert finding.strength is Strength.CAMERA_CLAIM


def test_c2pa_manifest_of_digital_art_is_information() -> None:
    finding = only(read_provenance(pf.c2pa_signed(pf.jpeg(), source_type="digitalArt")), Kind.C2PA)
    assert finding.strength is Strength.INFO


def test_broken_c2pa_manifest_is_recorded_and_ignored() -> None:
    plain = pf.jpeg()
    junk = b"JP\x00\x01" + b"\x00\x00\x00\x01" + b"jumbc2pa" + bytes(range(256)) * 4
    segment = b"\xff\xeb" + (len(junk) + 2).to_bytes(2, "big") + junk
    findings = read_provenance(plain[:2] + segment + plain[2:])
    error = only(findings, Kind.ERROR)
    assert error.strength is Strength.IGNORED
    assert "C2PA" in error.says
    assert declaring_ai(findings) is None


@pytest.mark.parametrize("element", [False, True])
@pytest.mark.parametrize(
    ("code", "strength"),
    [
        ("trainedAlgorithmicMedia", Strength.DECLARES_AI),
        ("compositeWithTrainedAlgorithmicMedia", Strength.DECLARES_AI),
        ("algorithmicMedia", Strength.HINT),
        ("digitalCapture", Strength.CAMERA_CLAIM),
    ],
)
def test_xmp_iptc_digital_source_type_in_jpeg(code: str, strength: Strength, element: bool) -> None:
    finding = only(read_provenance(pf.jpeg(xmp=pf.xmp(code, element=element))), Kind.XMP)
    assert finding.strength is strength
    assert code in finding.says


def test_xmp_in_png_and_webp() -> None:
    packet = pf.xmp("trainedAlgorithmicMedia")
    in_png = pf.png({"XML:com.adobe.xmp": packet.decode()}, itxt=True)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 20, 20)).save(buf, "WEBP", xmp=packet)
    for data in (in_png, buf.getvalue()):
        assert only(read_provenance(data), Kind.XMP).strength is Strength.DECLARES_AI


@pytest.mark.parametrize(
    ("texts", "names"),
    [
        ({"parameters": pf.A1111}, "Stable Diffusion WebUI parameters, model sd_xl_base_1.0"),
        ({"prompt": pf.COMFY_PROMPT, "workflow": pf.COMFY_WORKFLOW}, "ComfyUI"),
        ({"invokeai_metadata": '{"positive_prompt": "a face"}'}, "InvokeAI"),
        ({"Software": "NovelAI", "Comment": pf.NOVELAI_COMMENT}, "NovelAI"),
        ({"fooocus_scheme": "fooocus"}, "Fooocus"),
    ],
)
@pytest.mark.parametrize("itxt", [False, True])
def test_generator_ui_text_chunks_declare_ai(texts: dict[str, str], names: str, itxt: bool) -> None:
    findings = read_provenance(pf.png(texts, itxt=itxt))
    decisive = declaring_ai(findings)
    assert decisive is not None and decisive.kind is Kind.PNG_TEXT
    assert names in summarize(findings)


def test_lookalike_text_chunks_are_only_hints_or_nothing() -> None:
    findings = read_provenance(pf.png({"parameters": "hello", "prompt": "a poem", "Title": "x"}))
    assert declaring_ai(findings) is None
    assert {f.strength for f in findings} == {Strength.HINT}


def test_exif_camera_is_a_claim_and_generator_software_a_hint() -> None:
    data = pf.jpeg(exif=pf.exif(software="Adobe Firefly", make="Canon", model="EOS R5"))
    findings = read_provenance(data)
    by_strength = {f.strength: f for f in findings}
    assert by_strength[Strength.CAMERA_CLAIM].says == "camera 'Canon EOS R5'"
    assert "names an image generator" in by_strength[Strength.HINT].says
    assert declaring_ai(findings) is None
    assert "[camera claim, not trusted]" in summarize(findings)


def test_exif_editor_software_is_information() -> None:
    finding = only(read_provenance(pf.jpeg(exif=pf.exif(software="GIMP 2.10"))), Kind.EXIF)
    assert finding.strength is Strength.INFO


def test_a1111_parameters_in_exif_user_comment_declare_ai() -> None:
    for data in (pf.jpeg(exif=pf.user_comment_exif(pf.A1111)),):
        assert declaring_ai(read_provenance(data)) is not None
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, "WEBP", exif=pf.user_comment_exif(pf.A1111))
    assert declaring_ai(read_provenance(buf.getvalue())) is not None


# --- hostile metadata ---------------------------------------------------------------------


def test_a_50_mb_xmp_packet_is_recorded_not_read() -> None:
    packet = pf.xmp("trainedAlgorithmicMedia") + b" " * 50_000_000
    body = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + packet
    data = pf.with_png_chunk(pf.png({}), b"iTXt", body)
    start = time.perf_counter()
    findings = read_provenance(data)
    assert time.perf_counter() - start < 1.0
    error = only(findings, Kind.ERROR)
    assert "over the limit" in error.says and error.strength is Strength.IGNORED
    assert declaring_ai(findings) is None


def test_a_text_chunk_zip_bomb_stops_at_the_limit() -> None:
    bomb = zlib.compress(b"A" * 200_000_000, 9)  # ~200 KB that inflate to 200 MB
    body = b"parameters\x00\x01\x00\x00\x00" + bomb
    start = time.perf_counter()
    findings = read_provenance(pf.with_png_chunk(pf.png({}), b"iTXt", body))
    assert time.perf_counter() - start < 1.0
    assert "more than" in only(findings, Kind.ERROR).says


def test_xmp_with_entities_is_not_expanded() -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    ) + pf.xmp("trainedAlgorithmicMedia")
    findings = read_provenance(pf.jpeg(xmp=laughs))
    assert "entities" in only(findings, Kind.ERROR).says
    assert declaring_ai(findings) is None


def test_broken_exif_is_recorded() -> None:
    bogus = b"MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x01" * 64
    findings = read_provenance(pf.jpeg(exif=b"Exif\x00\x00" + bogus))
    assert all(f.strength in (Strength.IGNORED, Strength.INFO) for f in findings)


def test_chunk_lengths_pointing_past_the_end_stop_the_walk() -> None:
    data = pf.with_png_chunk(pf.png({}), b"tEXt", b"parameters\x00x", length=2**31)
    assert read_provenance(data) == ()


def test_a_million_tiny_chunks_cost_a_bounded_walk() -> None:
    data = pf.png({})
    chunks = (b"\x00\x00\x00\x00tIME" + zlib.crc32(b"tIME").to_bytes(4, "big")) * 1_000_000
    start = time.perf_counter()
    read_provenance(data[:33] + chunks + data[33:])
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"GIF89a"]
)
def test_stubs_and_empty_input_are_fine(data: bytes) -> None:
    assert read_provenance(data) == ()


def test_random_corruption_never_raises() -> None:
    rng = random.Random(7)
    samples = [
        pf.c2pa_signed(pf.jpeg()),
        pf.png({"parameters": pf.A1111, "XML:com.adobe.xmp": pf.xmp("digitalCapture").decode()}),
        pf.jpeg(exif=pf.exif(make="Nikon", model="Z6"), xmp=pf.xmp("trainedAlgorithmicMedia")),
    ]
    for sample in samples:
        for _ in range(60):
            data = bytearray(sample)
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            findings = read_provenance(bytes(data[: rng.randint(1, len(data))]))
            assert all(isinstance(f, Finding) for f in findings)


def test_limits_bound_findings_and_text() -> None:
    limits = ProvenanceLimits(max_findings=1, max_says_chars=20)
    data = pf.jpeg(exif=pf.exif(software="x" * 100, make="Canon", model="EOS"))
    findings = read_provenance(data, limits)
    assert len(findings) == 1 and len(findings[0].says) <= 20
