// The image type every stage of PaliImage passes along: 8-bit RGB, rows top to bottom.

/// An 8-bit RGB image, pixels packed row by row (HWC): the byte of channel `c` at (x, y) is
/// `pixels[(y * width + x) * 3 + c]`. This is what Pillow's `np.array(image.convert("RGB"))` holds.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0, "RGBImage needs a positive size, got \(width)x\(height)")
        precondition(pixels.count == width * height * 3,
                     "RGBImage \(width)x\(height) needs \(width * height * 3) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// One pixel as (r, g, b); for tests and debugging, not for loops.
    public subscript(x: Int, y: Int) -> (UInt8, UInt8, UInt8) {
        let i = (y * width + x) * 3
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }
}
