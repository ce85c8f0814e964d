// Decimal text of an integer appended to a byte buffer, without Foundation's formatters: for writers of
// large JSON files (`tokenize` over a corpus, the `--trace` timeline) where formatting is the hot path.

/// Appends the decimal digits of `value` (with "-" when negative) to `out`.
public func appendDecimal(_ value: Int64, to out: inout [UInt8]) {
    if value < 0 { out.append(UInt8(ascii: "-")) }
    var m = value.magnitude
    var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                 UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var n = 0
    withUnsafeMutableBytes(of: &digits) { d in
        repeat {
            d[n] = UInt8(ascii: "0") + UInt8(m % 10)
            m /= 10
            n += 1
        } while m > 0
        for i in stride(from: n - 1, through: 0, by: -1) { out.append(d[i]) }
    }
}
