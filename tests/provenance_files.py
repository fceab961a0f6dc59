"""Real small images carrying provenance metadata, written the way generators and cameras do.

Pillow writes PNG text chunks, EXIF and XMP; the c2pa package signs a manifest with a throwaway
test CA and signer certificate made here with `cryptography` (never a real credential).
"""

from __future__ import annotations

import datetime
import functools
import io
from typing import Any

from PIL import Image, PngImagePlugin

from tests.conftest import render_image

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
A1111 = (
    "portrait of a woman, studio light\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model: sd_xl_base_1.0"
)
COMFY_PROMPT = '{"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}'
COMFY_WORKFLOW = '{"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}]}'
NOVELAI_COMMENT = '{"prompt": "a face", "steps": 28, "sampler": "k_euler", "seed": 1}'


def jpeg(color: Any = (128, 128, 128), **save: Any) -> bytes:
    """A 64 px JPEG of `color`, saved with Pillow's keyword arguments (exif=, xmp=...)."""
    buf = io.BytesIO()
    render_image((64, 64), color, noise=8).save(buf, "JPEG", **save)
    return buf.getvalue()


def png(texts: dict[str, str], color: Any = (128, 128, 128), *, itxt: bool = False) -> bytes:
    """A 64 px PNG with these text chunks (tEXt, or compressed iTXt when `itxt`)."""
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        if itxt:
            info.add_itxt(key, value, zip=True)
        else:
            info.add_text(key, value)
    buf = io.BytesIO()
    render_image((64, 64), color, noise=8).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def exif(
    *, software: str | None = None, make: str | None = None, model: str | None = None
) -> bytes:
    """An EXIF block with the given Software / Make / Model tags."""
    tags = Image.Exif()
    for tag, value in ((0x0131, software), (0x010F, make), (0x0110, model)):
        if value is not None:
            tags[tag] = value
    return tags.tobytes()


def user_comment_exif(text: str) -> bytes:
    """EXIF whose UserComment holds `text` the way A1111 (piexif) writes it: UNICODE, UTF-16BE."""
    tags = Image.Exif()
    tags.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")
    return tags.tobytes()


def xmp(source_type: str, *, element: bool = False) -> bytes:
    """An XMP packet declaring an IPTC digital source type (attribute or element form)."""
    value = IPTC + source_type
    if element:
        body = f"<Iptc4xmpExt:DigitalSourceType>{value}</Iptc4xmpExt:DigitalSourceType>"
        attr = ""
    else:
        body, attr = "", f' Iptc4xmpExt:DigitalSourceType="{value}"'
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        f"{attr}>{body}</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


@functools.cache
def _test_signer_pems() -> tuple[bytes, bytes]:
    """(certificate chain PEM, private key PEM) of a test signer under a test CA, made once."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deepfake-detector tests"),
            ]
        )

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def cert(subject: str, issuer: x509.Name, public: Any, ca: bool) -> x509.CertificateBuilder:
        usage = dict.fromkeys(
            ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement"),
            False,
        )
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not ca,
                    key_cert_sign=ca,
                    crl_sign=ca,
                    encipher_only=False,
                    decipher_only=False,
                    **usage,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )

    ca = cert("Test CA", name("Test CA"), ca_key.public_key(), True).sign(ca_key, hashes.SHA256())
    leaf = (
        cert("Test signer", ca.subject, key.public_key(), False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, private


def c2pa_signed(
    source: bytes,
    mime: str = "image/jpeg",
    *,
    source_type: str = "trainedAlgorithmicMedia",
    generator: str = "TestGen",
) -> bytes:
    """`source` with an embedded, signed C2PA manifest whose action has this digital source type."""
    import c2pa

    # C2PA 2.x requires a first action `c2pa.created` (or opened) with a digital source type.
    action = {"action": "c2pa.created", "digitalSourceType": IPTC + source_type}
    manifest = {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": "test image",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
    }
    chain, key = _test_signer_pems()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
    out = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer, mime, io.BytesIO(source), out)
    return out.getvalue()


def tampered(signed: bytes) -> bytes:
    """The signed file with one byte of its image data changed (the manifest's hash breaks)."""
    data = bytearray(signed)
    data[-100] ^= 0xFF
    return bytes(data)


def with_png_chunk(
    png_bytes: bytes, ctype: bytes, body: bytes, *, length: int | None = None
) -> bytes:
    """`png_bytes` with one more chunk before IEND (a wrong `length` makes a corrupt chunk)."""
    import zlib

    head = (len(body) if length is None else length).to_bytes(4, "big") + ctype
    chunk = head + body + zlib.crc32(ctype + body).to_bytes(4, "big")
    iend = png_bytes.rindex(b"IEND") - 4
    return png_bytes[:iend] + chunk + png_bytes[iend:]
