// C side of image decoding: libjpeg-turbo (libjpeg API) and libpng.
// Both libraries report errors with longjmp, which must never cross a Swift frame: every call
// that can fail is wrapped here, in C, behind its own setjmp, and returns an error code plus a
// message instead. Swift sees only plain structs, an opaque handle and these functions.
//
// Usage (all on one thread, `data` alive and unchanged from open to close):
//   cimg_open(data, size, &dec, &info, msg, sizeof msg)  -> header only: size, layout
//   cimg_read(dec, pixels, capacity, msg, sizeof msg)    -> samples, info.channels per pixel
//   cimg_close(dec)                                      -> always, if open succeeded
//
// Pixels come back exactly as stored, with no colour management, gamma or alpha handling: the
// Pillow-compatible conversion to RGB is done in Swift (PaliImage), which needs the raw samples.
#ifndef CIMAGECODECS_H
#define CIMAGECODECS_H
#include <stddef.h>
#include <stdint.h>

/// Result codes of the functions below.
enum {
    CIMG_OK = 0,
    CIMG_ERR_FORMAT = 1,       // neither JPEG nor PNG
    CIMG_ERR_CORRUPT = 2,      // the library rejected the data
    CIMG_ERR_TRUNCATED = 3,    // the data ended before the image did
    CIMG_ERR_UNSUPPORTED = 4,  // valid, but a layout this decoder does not handle (12-bit JPEG, 2 components)
    CIMG_ERR_MEMORY = 5,       // allocation failed
    CIMG_ERR_ARGUMENT = 6,     // caller error (buffer too small, read twice)
};

enum { CIMG_FORMAT_JPEG = 1, CIMG_FORMAT_PNG = 2 };

/// What the header says. For JPEG, `channels` is 1 (grayscale), 3 (RGB, converted from YCbCr by
/// libjpeg where the file is YCbCr) or 4 (CMYK as stored, converted from YCCK by libjpeg where
/// the file is YCCK; not inverted). For PNG, `channels` is the number of samples per pixel of the
/// PNG colour type (gray 1, gray+alpha 2, RGB 3, RGBA 4, palette 1); samples of 1/2/4-bit images
/// are unpacked to one byte each without scaling; 16-bit samples are two bytes, big-endian.
typedef struct cimg_info {
    int32_t format;            // CIMG_FORMAT_*
    int32_t width;
    int32_t height;
    int32_t channels;          // samples per pixel delivered by cimg_read
    int32_t bytes_per_sample;  // 1, or 2 for 16-bit PNG
    int32_t bit_depth;         // PNG bit depth (1, 2, 4, 8, 16); 8 for JPEG
    int32_t color_type;        // PNG colour type (0, 2, 3, 4, 6); JPEG J_COLOR_SPACE of the file
    int32_t interlaced;        // PNG Adam7
    int32_t progressive;       // JPEG progressive (or other multi-scan) mode
    int32_t adobe_marker;      // JPEG has an Adobe APP14 marker
    int32_t adobe_transform;   // its transform flag (0 none, 1 YCbCr, 2 YCCK)
} cimg_info;

typedef struct cimg_decoder cimg_decoder;

/// Version marker so Swift can check the shim is linked.
int cimg_version(void);

/// Reads the header of a JPEG or PNG held in memory. On success `*decoder` must be passed to
/// cimg_close. No pixel memory is allocated here, so callers can refuse huge images first.
int cimg_open(const uint8_t *data, size_t size, cimg_decoder **decoder, cimg_info *info,
              char *message, size_t message_size);

/// Decodes all pixels into `pixels`, rows top to bottom, packed
/// (width * channels * bytes_per_sample bytes per row). `capacity` is the size of `pixels`.
int cimg_read(cimg_decoder *decoder, uint8_t *pixels, size_t capacity,
              char *message, size_t message_size);

/// Releases everything cimg_open allocated. Accepts NULL.
void cimg_close(cimg_decoder *decoder);

#endif
