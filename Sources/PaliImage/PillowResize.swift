// Pillow 13.0's bicubic resize (libImaging/Resample.c), bit-exact, for 8-bit RGB.
//
// Per axis (in -> out): scale = in / out, fs = max(scale, 1), support = 2 fs; output index o has
// center = (o + 0.5) scale, taps xmin = max(int(center - support + 0.5), 0) ..<
// xmax = min(int(center + support + 0.5), in), weights w_j = K((j + xmin - center + 0.5) * (1 / fs))
// with Keys' cubic (a = -0.5), divided by their sum, then fixed point with 22 fractional bits
// (int(w * 2^22 +/- 0.5), rounding away from zero). A pass computes
// clip8((2^21 + sum pixel * w) >> 22) in Int32 per channel and stores UInt8: the second pass reads
// the rounded 8-bit result of the first.
// Pass order (Pillow 13.0; Pillow <= 12 always went horizontal first): vertical first iff
// (inH - outH) > 0 && (inH - outH) > 2 (inW - outW). An axis whose size does not change is not
// resampled at all; if neither changes the image is copied.
//
// Two implementations: `bicubicReference` (weights in Double recomputed for every output pixel,
// plain loops: obviously Pillow's arithmetic) and `bicubic` (integer weights precomputed once per
// axis, unsafe-pointer loops the compiler vectorises). Tests check they agree bit for bit.

public enum PillowResize {
    /// Resizes to `width` x `height` exactly as Pillow 13.0's `Image.resize(..., BICUBIC)`.
    public static func bicubic(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        resize(image, width: width, height: height,
               horizontal: FastPass.horizontal, vertical: FastPass.vertical)
    }

    /// The slow, obviously correct twin of `bicubic`, kept to test it against.
    public static func bicubicReference(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        resize(image, width: width, height: height,
               horizontal: ReferencePass.horizontal, vertical: ReferencePass.vertical)
    }

    /// Pillow 13.0's pass-order rule: true when the vertical pass runs first.
    public static func verticalFirst(inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int) -> Bool {
        let dy = inHeight - outHeight, dx = inWidth - outWidth
        return dy > 0 && dy > 2 * dx
    }

    typealias Pass = (RGBImage, Int) -> RGBImage

    private static func resize(_ image: RGBImage, width: Int, height: Int,
                               horizontal: Pass, vertical: Pass) -> RGBImage {
        precondition(width > 0 && height > 0, "resize target must be positive, got \(width)x\(height)")
        var out = image
        if verticalFirst(inWidth: image.width, inHeight: image.height, outWidth: width, outHeight: height) {
            if height != out.height { out = vertical(out, height) }
            if width != out.width { out = horizontal(out, width) }
        } else {
            if width != out.width { out = horizontal(out, width) }
            if height != out.height { out = vertical(out, height) }
        }
        return out
    }

    // MARK: Filter and coefficients (shared arithmetic, in Pillow's order of operations)

    static let precisionBits = 22

    /// Keys' cubic convolution kernel with a = -0.5, as Resample.c's bicubic_filter.
    @inline(__always)
    static func bicubicKernel(_ x: Double) -> Double {
        let a = -0.5
        let x = x < 0 ? -x : x
        if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
        if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0.0
    }

    /// Resample.c normalize_coeffs_8bpc: to fixed point, rounding half away from zero.
    @inline(__always)
    static func fixedPoint(_ w: Double) -> Int32 {
        w < 0 ? Int32(-0.5 + w * Double(1 << precisionBits)) : Int32(0.5 + w * Double(1 << precisionBits))
    }

    /// Taps of one output index: first input index, and the normalised Double weights.
    static func taps(inSize: Int, outSize: Int, index o: Int) -> (first: Int, weights: [Double]) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 2.0 * filterScale
        let invFilterScale = 1.0 / filterScale
        let center = (Double(o) + 0.5) * scale
        let xmin = max(Int(center - support + 0.5), 0)
        let xmax = min(Int(center + support + 0.5), inSize)
        var weights: [Double] = []
        var sum = 0.0
        for x in 0..<max(xmax - xmin, 0) {
            let w = bicubicKernel((Double(x + xmin) - center + 0.5) * invFilterScale)
            weights.append(w)
            sum += w
        }
        if sum != 0.0 { weights = weights.map { $0 / sum } }
        return (xmin, weights)
    }
}

/// Integer coefficients of one axis, precomputed: output o reads `count[o]` inputs from
/// `first[o]` with weights `weights[o * ksize ..< o * ksize + count[o]]`.
struct AxisCoefficients {
    let ksize: Int
    var first: [Int]
    var count: [Int]
    var weights: [Int32]

    init(inSize: Int, outSize: Int) {
        let filterScale = max(Double(inSize) / Double(outSize), 1.0)
        ksize = Int((2.0 * filterScale).rounded(.up)) * 2 + 1
        first = []; count = []
        weights = [Int32](repeating: 0, count: outSize * ksize)
        for o in 0..<outSize {
            let (xmin, w) = PillowResize.taps(inSize: inSize, outSize: outSize, index: o)
            first.append(xmin)
            count.append(w.count)
            for (j, v) in w.enumerated() { weights[o * ksize + j] = PillowResize.fixedPoint(v) }
        }
    }
}

// MARK: - Reference passes

private enum ReferencePass {
    static func horizontal(_ image: RGBImage, _ outWidth: Int) -> RGBImage {
        var out = [UInt8](repeating: 0, count: outWidth * image.height * 3)
        for y in 0..<image.height {
            for xo in 0..<outWidth {
                let (xmin, w) = PillowResize.taps(inSize: image.width, outSize: outWidth, index: xo)
                for c in 0..<3 {
                    var acc: Int32 = 1 << (PillowResize.precisionBits - 1)
                    for j in 0..<w.count {
                        acc += Int32(image.pixels[(y * image.width + xmin + j) * 3 + c]) * PillowResize.fixedPoint(w[j])
                    }
                    out[(y * outWidth + xo) * 3 + c] = clip8(acc)
                }
            }
        }
        return RGBImage(width: outWidth, height: image.height, pixels: out)
    }

    static func vertical(_ image: RGBImage, _ outHeight: Int) -> RGBImage {
        var out = [UInt8](repeating: 0, count: image.width * outHeight * 3)
        for yo in 0..<outHeight {
            let (ymin, w) = PillowResize.taps(inSize: image.height, outSize: outHeight, index: yo)
            for x in 0..<image.width {
                for c in 0..<3 {
                    var acc: Int32 = 1 << (PillowResize.precisionBits - 1)
                    for j in 0..<w.count {
                        acc += Int32(image.pixels[((ymin + j) * image.width + x) * 3 + c]) * PillowResize.fixedPoint(w[j])
                    }
                    out[(yo * image.width + x) * 3 + c] = clip8(acc)
                }
            }
        }
        return RGBImage(width: image.width, height: outHeight, pixels: out)
    }

    static func clip8(_ acc: Int32) -> UInt8 {
        UInt8(clamping: acc >> Int32(PillowResize.precisionBits))
    }
}

// MARK: - Fast passes

private enum FastPass {
    static let half: Int32 = 1 << (PillowResize.precisionBits - 1)
    static let shift = Int32(PillowResize.precisionBits)

    static func horizontal(_ image: RGBImage, _ outWidth: Int) -> RGBImage {
        let coeffs = AxisCoefficients(inSize: image.width, outSize: outWidth)
        let height = image.height, inRow = image.width * 3, outRow = outWidth * 3, ksize = coeffs.ksize
        let pixels = [UInt8](unsafeUninitializedCapacity: outRow * height) { out, initialized in
            image.pixels.withUnsafeBufferPointer { src in
                coeffs.weights.withUnsafeBufferPointer { weights in
                    coeffs.first.withUnsafeBufferPointer { first in
                        coeffs.count.withUnsafeBufferPointer { count in
                            for y in 0..<height {
                                let row = src.baseAddress! + y * inRow
                                let dst = out.baseAddress! + y * outRow
                                // Each tap loads 4 bytes (R, G, B and the next pixel's R, whose lane
                                // is ignored); only the very last pixel of the buffer cannot.
                                let lastRow = y == height - 1
                                for xo in 0..<outWidth {
                                    let k = weights.baseAddress! + xo * ksize
                                    let n = count[xo]
                                    let p = row + first[xo] * 3
                                    var acc = SIMD4<Int32>(repeating: half)
                                    let wide = lastRow && first[xo] + n == image.width ? n - 1 : n
                                    for j in 0..<wide {
                                        let bytes = UnsafeRawPointer(p + 3 * j).loadUnaligned(as: SIMD4<UInt8>.self)
                                        acc &+= SIMD4<Int32>(truncatingIfNeeded: bytes) &* SIMD4(repeating: k[j])
                                    }
                                    if wide < n {
                                        let q = p + 3 * wide, w = k[wide]
                                        acc &+= SIMD4<Int32>(Int32(q[0]), Int32(q[1]), Int32(q[2]), 0) &* SIMD4(repeating: w)
                                    }
                                    dst[xo * 3] = clip8(acc[0])
                                    dst[xo * 3 + 1] = clip8(acc[1])
                                    dst[xo * 3 + 2] = clip8(acc[2])
                                }
                            }
                        }
                    }
                }
            }
            initialized = outRow * height
        }
        return RGBImage(width: outWidth, height: height, pixels: pixels)
    }

    static func vertical(_ image: RGBImage, _ outHeight: Int) -> RGBImage {
        let coeffs = AxisCoefficients(inSize: image.height, outSize: outHeight)
        let rowLength = image.width * 3, ksize = coeffs.ksize
        var acc = [Int32](repeating: 0, count: rowLength)
        let pixels = [UInt8](unsafeUninitializedCapacity: rowLength * outHeight) { out, initialized in
            image.pixels.withUnsafeBufferPointer { src in
                acc.withUnsafeMutableBufferPointer { acc in
                    let acc = acc.baseAddress!
                    for yo in 0..<outHeight {
                        for i in 0..<rowLength { acc[i] = half }
                        for j in 0..<coeffs.count[yo] {
                            let w = coeffs.weights[yo * ksize + j]
                            let row = src.baseAddress! + (coeffs.first[yo] + j) * rowLength
                            for i in 0..<rowLength { acc[i] &+= Int32(row[i]) &* w }
                        }
                        let dst = out.baseAddress! + yo * rowLength
                        for i in 0..<rowLength { dst[i] = clip8(acc[i]) }
                    }
                }
            }
            initialized = rowLength * outHeight
        }
        return RGBImage(width: image.width, height: outHeight, pixels: pixels)
    }

    @inline(__always)
    static func clip8(_ acc: Int32) -> UInt8 {
        let v = acc >> shift
        return UInt8(truncatingIfNeeded: v < 0 ? 0 : (v > 255 ? 255 : v))
    }
}
