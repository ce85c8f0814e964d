// Pillow 13.0's bicubic resize of a single-channel 8-bit image (mode "L"), bit-exact: the same
// coefficients, fixed-point arithmetic and pass order as the RGB resize in PillowResize.swift
// (Resample.c handles 1-band images in the same 8bpc passes). Used to paste segmentation masks
// into their boxes as Google's PaliGemma demo does (`Image.fromarray(uint8).resize((w, h))`).

/// An 8-bit single-channel image, rows top to bottom: the byte at (x, y) is `pixels[y * width + x]`.
public struct GrayImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0, "GrayImage needs a positive size, got \(width)x\(height)")
        precondition(pixels.count == width * height,
                     "GrayImage \(width)x\(height) needs \(width * height) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public subscript(x: Int, y: Int) -> UInt8 { pixels[y * width + x] }
}

extension PillowResize {
    /// Resizes to `width` x `height` exactly as Pillow 13.0's `Image.resize(..., BICUBIC)` on mode "L".
    public static func bicubic(_ image: GrayImage, width: Int, height: Int) -> GrayImage {
        precondition(width > 0 && height > 0, "resize target must be positive, got \(width)x\(height)")
        var out = image
        if verticalFirst(inWidth: image.width, inHeight: image.height, outWidth: width, outHeight: height) {
            if height != out.height { out = grayVertical(out, height) }
            if width != out.width { out = grayHorizontal(out, width) }
        } else {
            if width != out.width { out = grayHorizontal(out, width) }
            if height != out.height { out = grayVertical(out, height) }
        }
        return out
    }

    private static func grayHorizontal(_ image: GrayImage, _ outWidth: Int) -> GrayImage {
        let coeffs = AxisCoefficients(inSize: image.width, outSize: outWidth)
        var out = [UInt8](repeating: 0, count: outWidth * image.height)
        for y in 0..<image.height {
            let row = y * image.width
            for xo in 0..<outWidth {
                var acc: Int32 = 1 << (precisionBits - 1)
                for j in 0..<coeffs.count[xo] {
                    acc &+= Int32(image.pixels[row + coeffs.first[xo] + j]) &* coeffs.weights[xo * coeffs.ksize + j]
                }
                out[y * outWidth + xo] = grayClip8(acc)
            }
        }
        return GrayImage(width: outWidth, height: image.height, pixels: out)
    }

    private static func grayVertical(_ image: GrayImage, _ outHeight: Int) -> GrayImage {
        let coeffs = AxisCoefficients(inSize: image.height, outSize: outHeight)
        let w = image.width
        var out = [UInt8](repeating: 0, count: w * outHeight)
        for yo in 0..<outHeight {
            for x in 0..<w {
                var acc: Int32 = 1 << (precisionBits - 1)
                for j in 0..<coeffs.count[yo] {
                    acc &+= Int32(image.pixels[(coeffs.first[yo] + j) * w + x]) &* coeffs.weights[yo * coeffs.ksize + j]
                }
                out[yo * w + x] = grayClip8(acc)
            }
        }
        return GrayImage(width: w, height: outHeight, pixels: out)
    }

    @inline(__always)
    private static func grayClip8(_ acc: Int32) -> UInt8 {
        let v = acc >> Int32(precisionBits)
        return UInt8(truncatingIfNeeded: v < 0 ? 0 : (v > 255 ? 255 : v))
    }
}
