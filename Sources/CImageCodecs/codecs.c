// JPEG (libjpeg API of libjpeg-turbo) and PNG (libpng 1.6) decoding from memory.
// Every entry point that calls into a library first sets its own setjmp; the libraries' error
// handlers longjmp back to it, so no longjmp ever leaves this file. Decoder state lives on the
// heap (never in locals modified after setjmp).
#include "CImageCodecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

int cimg_version(void) { return 2; }

// MARK: - Shared

struct cimg_jpeg_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int eof_warning;      // libjpeg hit the end of the data and inserted a fake EOI
    int code;             // libjpeg message code of the fatal error
    char text[JMSG_LENGTH_MAX];
};

struct cimg_decoder {
    int format;
    int read_done;
    const uint8_t *data;
    size_t size;
    // JPEG
    struct jpeg_decompress_struct cinfo;
    struct cimg_jpeg_error jerr;
    int jpeg_created;
    // PNG
    png_structp png;
    png_infop png_info;
    size_t position;      // read offset into data
    int png_eof;          // the read callback ran out of data
    char png_text[256];
    cimg_info info;
};

static void set_message(char *message, size_t message_size, const char *text) {
    if (message && message_size > 0) {
        snprintf(message, message_size, "%s", text);
    }
}

// MARK: - JPEG

static void jpeg_error_exit_cb(j_common_ptr cinfo) {
    struct cimg_jpeg_error *err = (struct cimg_jpeg_error *)cinfo->err;
    err->code = err->pub.msg_code;
    (*cinfo->err->format_message)(cinfo, err->text);
    longjmp(err->jump, 1);
}

static void jpeg_emit_message_cb(j_common_ptr cinfo, int msg_level) {
    struct cimg_jpeg_error *err = (struct cimg_jpeg_error *)cinfo->err;
    if (msg_level < 0) {  // warning: libjpeg carries on; only a premature end matters to us
        if (err->pub.msg_code == JWRN_JPEG_EOF) {
            err->eof_warning = 1;
        }
        err->pub.num_warnings++;
    }
}

static void jpeg_output_message_cb(j_common_ptr cinfo) { (void)cinfo; }

static int jpeg_failure(cimg_decoder *d, char *message, size_t message_size) {
    set_message(message, message_size, d->jerr.text);
    if (d->jerr.code == JERR_BAD_PRECISION || d->jerr.code == JERR_IMAGE_TOO_BIG) {
        return CIMG_ERR_UNSUPPORTED;
    }
    // Running out of data makes libjpeg insert a fake EOI (with a warning) and then usually fail
    // on something else ("no image", "bogus marker"): the root cause is the truncation.
    if (d->jerr.eof_warning || d->jerr.code == JERR_INPUT_EMPTY || d->jerr.code == JERR_INPUT_EOF) {
        return CIMG_ERR_TRUNCATED;
    }
    return CIMG_ERR_CORRUPT;
}

static int jpeg_open(cimg_decoder *d, char *message, size_t message_size) {
    d->cinfo.err = jpeg_std_error(&d->jerr.pub);
    d->jerr.pub.error_exit = jpeg_error_exit_cb;
    d->jerr.pub.emit_message = jpeg_emit_message_cb;
    d->jerr.pub.output_message = jpeg_output_message_cb;
    if (setjmp(d->jerr.jump)) {
        return jpeg_failure(d, message, message_size);
    }
    jpeg_create_decompress(&d->cinfo);
    d->jpeg_created = 1;
    jpeg_mem_src(&d->cinfo, d->data, (unsigned long)d->size);
    jpeg_read_header(&d->cinfo, TRUE);
    if (d->jerr.eof_warning) {
        set_message(message, message_size, "Premature end of JPEG file (inside the header)");
        return CIMG_ERR_TRUNCATED;
    }

    int components = d->cinfo.num_components;
    if (components != 1 && components != 3 && components != 4) {
        snprintf(message, message_size, "cannot handle %d-component JPEG images", components);
        return CIMG_ERR_UNSUPPORTED;
    }
    // Same output spaces as Pillow's JpegDecode.c for modes L, RGB and CMYK; the file's colour
    // space is left to libjpeg's own guess (JFIF, Adobe transform, component ids), as Pillow does.
    d->cinfo.out_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB : JCS_CMYK;

    d->info.format = CIMG_FORMAT_JPEG;
    d->info.width = (int32_t)d->cinfo.image_width;
    d->info.height = (int32_t)d->cinfo.image_height;
    d->info.channels = components;
    d->info.bytes_per_sample = 1;
    d->info.bit_depth = d->cinfo.data_precision;
    d->info.color_type = (int32_t)d->cinfo.jpeg_color_space;
    d->info.progressive = d->cinfo.progressive_mode ? 1 : 0;
    d->info.adobe_marker = d->cinfo.saw_Adobe_marker ? 1 : 0;
    d->info.adobe_transform = d->cinfo.Adobe_transform;
    return CIMG_OK;
}

static int jpeg_read(cimg_decoder *d, uint8_t *pixels, size_t capacity, char *message, size_t message_size) {
    if (setjmp(d->jerr.jump)) {
        return jpeg_failure(d, message, message_size);
    }
    jpeg_start_decompress(&d->cinfo);
    size_t row_bytes = (size_t)d->cinfo.output_width * (size_t)d->cinfo.output_components;
    if (d->cinfo.output_components != d->info.channels ||
        (int32_t)d->cinfo.output_width != d->info.width ||
        (int32_t)d->cinfo.output_height != d->info.height ||
        row_bytes * d->cinfo.output_height > capacity) {
        set_message(message, message_size, "JPEG output layout differs from its header");
        return CIMG_ERR_ARGUMENT;
    }
    while (d->cinfo.output_scanline < d->cinfo.output_height) {
        JSAMPROW row = pixels + row_bytes * d->cinfo.output_scanline;
        if (jpeg_read_scanlines(&d->cinfo, &row, 1) != 1) {
            set_message(message, message_size, "libjpeg returned no scanline");
            return CIMG_ERR_CORRUPT;
        }
    }
    // Pillow (without LOAD_TRUNCATED_IMAGES) fails when the data ends before the last scanline;
    // libjpeg instead pads with grey and warns. Turn that warning back into an error.
    if (d->jerr.eof_warning) {
        set_message(message, message_size, "Premature end of JPEG file");
        return CIMG_ERR_TRUNCATED;
    }
    // No jpeg_finish_decompress: anything after the last scanline (EOI, trailing bytes) is
    // irrelevant, and Pillow ignores it too.
    return CIMG_OK;
}

// MARK: - PNG

static void png_error_cb(png_structp png, png_const_charp text) {
    cimg_decoder *d = (cimg_decoder *)png_get_error_ptr(png);
    snprintf(d->png_text, sizeof d->png_text, "%s", text);
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp text) { (void)png; (void)text; }

static void png_read_cb(png_structp png, png_bytep out, size_t length) {
    cimg_decoder *d = (cimg_decoder *)png_get_io_ptr(png);
    if (length > d->size - d->position) {
        d->png_eof = 1;
        png_error(png, "unexpected end of file");
    }
    memcpy(out, d->data + d->position, length);
    d->position += length;
}

static int png_failure(cimg_decoder *d, char *message, size_t message_size) {
    set_message(message, message_size, d->png_text);
    return d->png_eof ? CIMG_ERR_TRUNCATED : CIMG_ERR_CORRUPT;
}

static int png_open(cimg_decoder *d, char *message, size_t message_size) {
    d->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, d, png_error_cb, png_warning_cb);
    if (!d->png) {
        set_message(message, message_size, "png_create_read_struct failed");
        return CIMG_ERR_MEMORY;
    }
    if (setjmp(png_jmpbuf(d->png))) {
        return png_failure(d, message, message_size);
    }
    d->png_info = png_create_info_struct(d->png);
    if (!d->png_info) {
        set_message(message, message_size, "png_create_info_struct failed");
        return CIMG_ERR_MEMORY;
    }
    png_set_read_fn(d->png, d, png_read_cb);
    // The pixel budget is enforced by the caller after this header read, with its own message.
    png_set_user_limits(d->png, 0x7fffffff, 0x7fffffff);
    // Pillow rejects a bad checksum on every chunk it reads, ancillary ones included.
    png_set_crc_action(d->png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_read_info(d->png, d->png_info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(d->png, d->png_info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    int channels;
    switch (color_type) {
        case PNG_COLOR_TYPE_GRAY: channels = 1; break;
        case PNG_COLOR_TYPE_GRAY_ALPHA: channels = 2; break;
        case PNG_COLOR_TYPE_RGB: channels = 3; break;
        case PNG_COLOR_TYPE_RGB_ALPHA: channels = 4; break;
        case PNG_COLOR_TYPE_PALETTE: channels = 1; break;
        default:
            snprintf(message, message_size, "unknown PNG colour type %d", color_type);
            return CIMG_ERR_CORRUPT;
    }
    d->info.format = CIMG_FORMAT_PNG;
    d->info.width = (int32_t)width;
    d->info.height = (int32_t)height;
    d->info.channels = channels;
    d->info.bytes_per_sample = bit_depth == 16 ? 2 : 1;
    d->info.bit_depth = bit_depth;
    d->info.color_type = color_type;
    d->info.interlaced = interlace != PNG_INTERLACE_NONE;
    return CIMG_OK;
}

static int png_read(cimg_decoder *d, uint8_t *pixels, size_t capacity, char *message, size_t message_size) {
    size_t row_bytes = (size_t)d->info.width * (size_t)d->info.channels * (size_t)d->info.bytes_per_sample;
    if (row_bytes * (size_t)d->info.height > capacity) {
        set_message(message, message_size, "pixel buffer too small");
        return CIMG_ERR_ARGUMENT;
    }
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)(d->info.height > 0 ? d->info.height : 1));
    if (!rows) {
        set_message(message, message_size, "out of memory for row pointers");
        return CIMG_ERR_MEMORY;
    }
    for (int32_t y = 0; y < d->info.height; y++) {
        rows[y] = pixels + row_bytes * (size_t)y;
    }
    if (setjmp(png_jmpbuf(d->png))) {
        free(rows);
        return png_failure(d, message, message_size);
    }
    // 1/2/4-bit samples: one byte each, values unscaled (Swift applies Pillow's scaling rules).
    // 16-bit samples stay big-endian. No gamma, no palette expansion, no tRNS expansion.
    if (d->info.bit_depth < 8) {
        png_set_packing(d->png);
    }
    if (d->info.interlaced) {
        png_set_interlace_handling(d->png);
    }
    png_read_update_info(d->png, d->png_info);
    if (png_get_rowbytes(d->png, d->png_info) != row_bytes) {
        free(rows);
        set_message(message, message_size, "libpng row size differs from the expected layout");
        return CIMG_ERR_ARGUMENT;
    }
    png_read_image(d->png, rows);
    free(rows);
    // No png_read_end: chunks after the image data do not change the pixels, and Pillow does
    // not require them either.
    return CIMG_OK;
}

// MARK: - Entry points

int cimg_open(const uint8_t *data, size_t size, cimg_decoder **decoder, cimg_info *info,
              char *message, size_t message_size) {
    *decoder = NULL;
    static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    int format;
    if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) {
        format = CIMG_FORMAT_JPEG;
    } else if (size >= 8 && memcmp(data, png_signature, 8) == 0) {
        format = CIMG_FORMAT_PNG;
    } else {
        set_message(message, message_size, "not a JPEG or PNG file (unrecognised signature)");
        return CIMG_ERR_FORMAT;
    }
    cimg_decoder *d = calloc(1, sizeof(cimg_decoder));
    if (!d) {
        set_message(message, message_size, "out of memory");
        return CIMG_ERR_MEMORY;
    }
    d->format = format;
    d->data = data;
    d->size = size;
    int rc = format == CIMG_FORMAT_JPEG ? jpeg_open(d, message, message_size)
                                        : png_open(d, message, message_size);
    if (rc != CIMG_OK) {
        cimg_close(d);
        return rc;
    }
    *info = d->info;
    *decoder = d;
    return CIMG_OK;
}

int cimg_read(cimg_decoder *decoder, uint8_t *pixels, size_t capacity, char *message, size_t message_size) {
    if (!decoder || decoder->read_done) {
        set_message(message, message_size, "decoder already used or not open");
        return CIMG_ERR_ARGUMENT;
    }
    decoder->read_done = 1;
    return decoder->format == CIMG_FORMAT_JPEG ? jpeg_read(decoder, pixels, capacity, message, message_size)
                                               : png_read(decoder, pixels, capacity, message, message_size);
}

void cimg_close(cimg_decoder *decoder) {
    if (!decoder) {
        return;
    }
    if (decoder->jpeg_created) {
        jpeg_destroy_decompress(&decoder->cinfo);
    }
    if (decoder->png) {
        png_destroy_read_struct(&decoder->png, decoder->png_info ? &decoder->png_info : NULL, NULL);
    }
    free(decoder);
}
