"""Photo decoder plug-ins: the ctypes binding against a tiny C library compiled here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from devices.idcard.errors import PhotoDecodeError
from devices.idcard.photo import (
    BMP_LEN,
    HEIGHT,
    WIDTH,
    WLT_LEN,
    PhotoDecoderConfig,
    SimulatedPhotoDecoder,
    VendorLibraryDecoder,
    describe,
    encode_simulated,
    is_simulated,
    placeholder_portrait,
)

# A stand-in vendor library with the usual ``unpack`` calling convention. It "decodes" by
# painting each pixel from the WLT bytes, so the test can predict every pixel; flag 1 writes a
# bottom-up BMP with 308-byte rows (as vendor libraries do), flag 0 raw top-down BGR.
FAKE_VENDOR_C = r"""
#include <string.h>
#include <stdint.h>
static void put16(unsigned char *p, uint16_t v) { p[0] = v & 255; p[1] = v >> 8; }
static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> (8*i); }
int unpack(const unsigned char *src, unsigned char *dst, int bmp) {
    if (src[0] == 0xEE) return -2;              /* a block this library refuses */
    if (!bmp) {
        for (int y = 0; y < 126; y++) for (int x = 0; x < 102; x++) {
            unsigned char *p = dst + (y * 102 + x) * 3;
            p[0] = src[(y * 102 + x) % 1024]; p[1] = (unsigned char)x; p[2] = (unsigned char)y;
        }
        return 1;
    }
    memset(dst, 0, 38862);
    dst[0] = 'B'; dst[1] = 'M'; put32(dst + 2, 38862); put32(dst + 10, 54);
    put32(dst + 14, 40); put32(dst + 18, 102); put32(dst + 22, 126); put16(dst + 26, 1);
    put16(dst + 28, 24); put32(dst + 34, 308 * 126);
    for (int y = 0; y < 126; y++) for (int x = 0; x < 102; x++) {
        unsigned char *p = dst + 54 + (125 - y) * 308 + x * 3;
        p[0] = src[(y * 102 + x) % 1024]; p[1] = (unsigned char)x; p[2] = (unsigned char)y;
    }
    return 1;
}
"""


@pytest.fixture(scope="module")
def vendor_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler on this machine to build the stand-in vendor library")
    folder = tmp_path_factory.mktemp("vendor")
    source = folder / "fakewlt.c"
    source.write_text(FAKE_VENDOR_C)
    library = folder / "libfakewlt.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(source)],
                   check=True, capture_output=True)
    return library


def _expected(wlt: bytes) -> np.ndarray:
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for y in range(HEIGHT):
        for x in range(WIDTH):
            image[y, x] = (wlt[(y * WIDTH + x) % WLT_LEN], x, y)
    return image


WLT = bytes((i * 7 + 3) % 256 for i in range(WLT_LEN))


def test_vendor_library_bmp_output_decodes_every_pixel(vendor_library: Path) -> None:
    decoder = VendorLibraryDecoder(vendor_library)
    photo = decoder.decode(WLT)
    assert photo.bgr.shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(photo.bgr, _expected(WLT))
    assert photo.simulated is False and photo.decoder == "vendor"
    assert photo.to_bmp()[:2] == b"BM"


def test_vendor_library_raw_bgr_output(vendor_library: Path) -> None:
    decoder = VendorLibraryDecoder(vendor_library, output="bgr", flag=0)
    assert np.array_equal(decoder.decode(WLT).bgr, _expected(WLT))


def test_vendor_library_failure_code_is_a_clear_error(vendor_library: Path) -> None:
    with pytest.raises(PhotoDecodeError, match="returned -2, expected 1"):
        VendorLibraryDecoder(vendor_library).decode(b"\xee" + WLT[1:])


def test_missing_library_and_missing_symbol_are_clear_errors(vendor_library: Path,
                                                             tmp_path: Path) -> None:
    with pytest.raises(PhotoDecodeError, match="not found"):
        VendorLibraryDecoder(tmp_path / "nope.so").decode(WLT)
    with pytest.raises(PhotoDecodeError, match="no function 'GetBmp'"):
        VendorLibraryDecoder(vendor_library, "GetBmp").decode(WLT)
    not_a_library = tmp_path / "junk.so"
    not_a_library.write_bytes(b"not an ELF file")
    with pytest.raises(PhotoDecodeError, match="cannot load"):
        VendorLibraryDecoder(not_a_library).decode(WLT)


def test_wrong_block_size_is_refused(vendor_library: Path) -> None:
    with pytest.raises(PhotoDecodeError, match="expected 1024"):
        VendorLibraryDecoder(vendor_library).decode(WLT[:1000])


def test_config_builds_the_vendor_decoder(vendor_library: Path) -> None:
    decoder = PhotoDecoderConfig(kind="vendor", library=vendor_library).build()
    assert isinstance(decoder, VendorLibraryDecoder)
    assert decoder.decode(WLT).bgr.shape == (HEIGHT, WIDTH, 3)
    with pytest.raises(PhotoDecodeError, match=r"needs photo_decoder\.library"):
        PhotoDecoderConfig(kind="vendor").build()
    assert PhotoDecoderConfig().build() is None


def test_simulated_container_round_trip_is_labelled() -> None:
    image = placeholder_portrait("x")
    block = encode_simulated(image)
    assert len(block) == WLT_LEN and is_simulated(block)
    photo = SimulatedPhotoDecoder().decode(block)
    assert photo.simulated is True
    assert photo.bgr.shape == (HEIGHT, WIDTH, 3)
    # lossy like a chip photo, but recognisably the same picture
    assert float(np.abs(photo.bgr.astype(int) - image.astype(int)).mean()) < 20
    info = describe(block, photo, None)
    assert info.format == "simulated-wlt" and info.simulated and info.decoded


def test_simulated_decoder_refuses_real_wlt() -> None:
    with pytest.raises(PhotoDecodeError, match="not a simulated photo"):
        SimulatedPhotoDecoder().decode(WLT)


def test_bmp_length_matches_the_spec() -> None:
    assert BMP_LEN == 38862
