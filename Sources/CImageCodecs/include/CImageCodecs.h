// C side of image decoding: libjpeg-turbo (libjpeg API and TurboJPEG) and libpng.
// Both libraries report errors with longjmp, which must never cross a Swift frame: every call
// that can fail is wrapped here, in C, and returns an error code plus a message instead.
#ifndef CIMAGECODECS_H
#define CIMAGECODECS_H
#include <stddef.h>
#include <stdint.h>

/// Version marker so Swift can check the shim is linked.
int cimg_version(void);

#endif
