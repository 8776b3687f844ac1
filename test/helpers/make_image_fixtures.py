"""Writes test/fixtures/images/: real photographs (scikit-image's samples) in the forms the host must decode, and
hostile files. Run: models/export/venv run test/helpers/make_image_fixtures.py  (deterministic; outputs committed)."""

import io
import os
import struct
import zlib

import numpy as np
from PIL import Image
from skimage import data

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "images")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def write_png16_rgb(path: str, arr: np.ndarray) -> None:
    """A 16-bit RGB PNG (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(
            b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(raw, 9))
            + png_chunk(b"IEND", b"")
        )


def s15f16(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def icc_profile(name: str, colorants: list[tuple[float, float, float]], trc: bytes) -> bytes:
    """A minimal ICC v2 RGB display profile (matrix/TRC), as cameras embed: colorants are the D50-adapted XYZ of the
    primaries, ``trc`` a curveType body shared by the three channels."""

    def xyz(v):
        return b"XYZ \0\0\0\0" + b"".join(s15f16(c) for c in v)

    desc = name.encode("ascii") + b"\0"
    tags = [
        (b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(desc)) + desc + b"\0" * 12 + b"\0" * 67),
        (b"cprt", b"text\0\0\0\0" + b"No copyright, test fixture\0"),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(colorants[0])),
        (b"gXYZ", xyz(colorants[1])),
        (b"bXYZ", xyz(colorants[2])),
        (b"rTRC", trc),
        (b"gTRC", trc),
        (b"bTRC", trc),
    ]
    table, body, offset, seen = b"", b"", 128 + 4 + 12 * len(tags), {}
    for sig, tag in tags:
        if tag not in seen:  # the three TRCs share one body, as real profiles do
            seen[tag] = offset + len(body)
            body += tag + b"\0" * (-len(tag) % 4)
        table += sig + struct.pack(">II", seen[tag], len(tag))
    size = 128 + 4 + len(table) + len(body)
    header = (
        struct.pack(">I", size)
        + b"\0\0\0\0"
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + s15f16(0.9642)
        + s15f16(1.0)
        + s15f16(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def gamma_curve(g: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(g * 256)) + b"\0\0"


def srgb_curve(n: int = 1024) -> bytes:
    x = np.linspace(0, 1, n)
    y = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    return b"curv\0\0\0\0" + struct.pack(">I", n) + np.round(y * 65535).astype(">u2").tobytes()


# Adobe RGB (1998): gamma 563/256; Display P3: the sRGB curve. Colorants D50-adapted, as in the published profiles.
ADOBE_RGB = icc_profile(
    "Adobe RGB (1998) test profile",
    [(0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457)],
    gamma_curve(563 / 256),
)
DISPLAY_P3 = icc_profile(
    "Display P3 test profile",
    [(0.515121, 0.241196, -0.001053), (0.291977, 0.692245, 0.041885), (0.157104, 0.066574, 0.784073)],
    srgb_curve(),
)


def strip_adobe_marker(jpeg: bytes) -> bytes:
    """The JPEG without its APP14 'Adobe' segment (some writers omit it; then CMYK is stored uninverted)."""
    out, i = jpeg[:2], 2
    while i < len(jpeg):
        marker, length = jpeg[i : i + 2], struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
        if marker == b"\xff\xda":  # start of scan: the rest is entropy-coded data
            return out + jpeg[i:]
        if not (marker == b"\xff\xee" and jpeg[i + 4 : i + 9] == b"Adobe"):
            out += jpeg[i : i + 2 + length]
        i += 2 + length
    raise ValueError("no start of scan")


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    astronaut = Image.fromarray(data.astronaut())  # 512x512
    coffee = Image.fromarray(data.coffee())  # 600x400
    chelsea = Image.fromarray(data.chelsea())  # 451x300
    rocket = Image.fromarray(data.rocket())  # 640x427
    camera = Image.fromarray(data.camera())  # 512x512 grayscale photograph

    astronaut.save(f"{OUT}/astronaut.png", optimize=True)
    coffee.save(f"{OUT}/coffee.jpg", quality=92)
    chelsea.save(f"{OUT}/chelsea.jpg", quality=92)
    rocket.save(f"{OUT}/rocket.jpg", quality=92)
    # portrait orientation (taller than wide) and a very wide strip, both from real photos
    rocket.crop((200, 0, 420, 427)).save(f"{OUT}/rocket-portrait.jpg", quality=92)
    coffee.crop((0, 150, 600, 230)).save(f"{OUT}/coffee-wide.png", optimize=True)  # 600x80, 7.5:1
    camera.save(f"{OUT}/camera-gray.png", optimize=True)
    camera.save(f"{OUT}/camera-gray.jpg", quality=92)

    # RGBA with a real alpha gradient and some fully transparent pixels (their colour must survive: alpha is dropped)
    a = np.tile(np.linspace(0, 255, chelsea.width).astype(np.uint8), (chelsea.height, 1))
    a[:40, :60] = 0
    rgba = chelsea.copy()
    rgba.putalpha(Image.fromarray(a))
    rgba.save(f"{OUT}/chelsea-rgba.png", optimize=True)

    # EXIF orientation: the stored pixels are rotated so that the upright photo appears after orientation is applied
    for orientation, method in (
        (6, Image.Transpose.ROTATE_90),
        (3, Image.Transpose.ROTATE_180),
        (8, Image.Transpose.ROTATE_270),
    ):
        exif = Image.Exif()
        exif[0x0112] = orientation
        coffee.transpose(method).save(f"{OUT}/coffee-exif{orientation}.jpg", quality=92, exif=exif.tobytes())

    # CMYK JPEG (libjpeg writes the Adobe marker with inverted CMYK, as Photoshop does)
    chelsea.convert("CMYK").save(f"{OUT}/chelsea-cmyk.jpg", quality=92)

    # 16-bit PNGs from real photos: high byte = the photo, low byte = a pattern that tells "high byte" (libpng strip,
    # what cv2 and Pillow's RGB;16B unpacker do) from "divide by 257 and round" apart
    arr16 = np.asarray(chelsea.resize((225, 150), Image.BICUBIC)).astype(np.uint16)
    low = (np.arange(arr16.size, dtype=np.uint32).reshape(arr16.shape) * 37 % 256).astype(np.uint16)
    write_png16_rgb(f"{OUT}/chelsea-16bit.png", arr16 * 256 + low)
    g8 = np.asarray(camera.resize((200, 200), Image.BICUBIC)).astype(np.uint16)
    glow = (np.arange(g8.size, dtype=np.uint32).reshape(g8.shape) * 37 % 256).astype(np.uint16)
    Image.fromarray(g8 * 256 + glow).save(f"{OUT}/camera-16bit-gray.png")

    # ICC profiles (LISA's cv2.imread ignores them; the tensors must too): a JPEG and a PNG per profile
    coffee.save(f"{OUT}/coffee-adobergb.jpg", quality=92, icc_profile=ADOBE_RGB)
    chelsea.save(f"{OUT}/chelsea-p3.png", optimize=True, icc_profile=DISPLAY_P3)
    rocket.save(f"{OUT}/rocket-p3.jpg", quality=92, icc_profile=DISPLAY_P3)
    astronaut.crop((0, 0, 256, 200)).save(f"{OUT}/astronaut-adobergb.png", optimize=True, icc_profile=ADOBE_RGB)

    # palette (with and without transparency), grey + alpha
    pal = chelsea.quantize(colors=200, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal.save(f"{OUT}/chelsea-palette.png", optimize=False)
    pal.save(
        f"{OUT}/chelsea-palette-trns.png",
        optimize=False,
        transparency=bytes(0 if i % 7 == 0 else 255 for i in range(200)),
    )
    la = camera.convert("LA")
    la.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, camera.width).astype(np.uint8), (camera.height, 1))))
    la.resize((256, 256), Image.BICUBIC).save(f"{OUT}/camera-gray-alpha.png", optimize=True)

    # TIFF: 8-bit RGB, 16-bit RGB and 16-bit grey (high byte the photo, low byte a pattern, as the 16-bit PNGs)
    import tifffile

    tifffile.imwrite(f"{OUT}/chelsea.tif", np.asarray(chelsea.crop((0, 0, 160, 120))), photometric="rgb")
    tifffile.imwrite(f"{OUT}/chelsea-16bit.tif", arr16 * 256 + low, photometric="rgb")
    tifffile.imwrite(f"{OUT}/camera-16bit-gray.tif", g8 * 256 + glow, photometric="minisblack")

    # CMYK JPEG without the Adobe marker (stored uninverted; OpenCV reads the values as they are)
    buf = io.BytesIO()
    chelsea.crop((100, 50, 300, 200)).convert("CMYK").save(buf, format="JPEG", quality=92)
    open(f"{OUT}/chelsea-cmyk-noadobe.jpg", "wb").write(strip_adobe_marker(buf.getvalue()))

    # EXIF orientation in a PNG and a WebP (OpenCV 4.8 applies it to JPEG only; see image-decode.test.ts)
    exif = Image.Exif()
    exif[0x0112] = 6
    small = coffee.resize((150, 100), Image.BICUBIC).transpose(Image.Transpose.ROTATE_90)
    small.save(f"{OUT}/coffee-exif6.png", exif=exif.tobytes())
    small.save(f"{OUT}/coffee-exif6.webp", lossless=True, exif=exif.tobytes())

    # animated GIF and WebP: the first frame is the one that counts
    frames = [chelsea.crop((0, 0, 200, 150)), chelsea.crop((200, 100, 400, 250)), coffee.crop((0, 0, 200, 150))]
    frames[0].save(f"{OUT}/animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(f"{OUT}/animated.webp", save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)

    # BMP (sharp has no BMP loader; the host reads plain BMP itself)
    chelsea.crop((0, 0, 151, 101)).save(f"{OUT}/chelsea.bmp")

    # ---- hostile files
    open(f"{OUT}/empty.png", "wb").close()
    with open(f"{OUT}/not-an-image.png", "w") as f:
        f.write("This is a text file that was given a .png name.\n" * 4)
    png = open(f"{OUT}/astronaut.png", "rb").read()
    open(f"{OUT}/truncated.png", "wb").write(png[: len(png) // 2])
    jpg = open(f"{OUT}/coffee.jpg", "rb").read()
    open(f"{OUT}/truncated.jpg", "wb").write(jpg[: len(jpg) // 2])
    # decompression bomb: a valid PNG header declaring 50000x50000 RGB, followed by a small slice of its zlib stream
    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (50000 * 3)
    idat = b"".join(comp.compress(row) for _ in range(64)) + comp.flush(zlib.Z_SYNC_FLUSH)
    with open(f"{OUT}/bomb.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


if __name__ == "__main__":
    main()
