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
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9))
                + png_chunk(b"IEND", b""))


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
    for orientation, method in ((6, Image.Transpose.ROTATE_90), (3, Image.Transpose.ROTATE_180),
                                (8, Image.Transpose.ROTATE_270)):
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

    # animated GIF and WebP: the first frame is the one that counts
    frames = [chelsea.crop((0, 0, 200, 150)), chelsea.crop((200, 100, 400, 250)), coffee.crop((0, 0, 200, 150))]
    frames[0].save(f"{OUT}/animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(f"{OUT}/animated.webp", save_all=True, append_images=frames[1:], duration=100, loop=0,
                   lossless=True)

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
