import Foundation

// Numbers in a JSON schema: bounds read from the schema, and whether a number's text so far can still end within
// them (integers on their own digits; other numbers exactly on the grid of decimals they can reach).

extension JSONSchema.Builder {
    /// A bound keyword's value (`minimum`, `exclusiveMaximum`, …) as the double the schema's JSON read to.
    func bound(_ obj: [String: Any], _ k: String, path: String) throws -> Double? {
        guard let v = obj[k] else { return nil }
        guard let d = (v as? Double) ?? (v as? Int).map(Double.init), d.isFinite else {
            throw JSONSchema.Unsupported(path: path, reason: "\(k) must be a number")
        }
        return d
    }

    /// A number node: free, or within `minimum`/`maximum` (exclusive or not).
    func number(_ obj: [String: Any], path: String) throws -> JSONSchema.Node {
        /// A bound in units of 10^−17 (NumberBounds.scale): the double's shortest digits, rounded inward at the 17th
        /// decimal.
        func scaled(_ k: String, _ rounding: NSDecimalNumber.RoundingMode) throws -> Int128? {
            guard let d = try bound(obj, k, path: path), var x = Decimal(string: "\(d)") else { return nil }
            let limit = Decimal(string: "1e20")!
            x = min(max(x, -limit), limit) * pow(Decimal(10), NumberBounds.scale)
            var r = Decimal()
            NSDecimalRound(&r, &x, 0, rounding)
            return Int128(NSDecimalNumber(decimal: r).stringValue)
        }
        var b = NumberBounds()
        if let x = try scaled("minimum", .up) { b.lo = x }
        if let x = try scaled("exclusiveMinimum", .up), b.lo.map({ x >= $0 }) ?? true { b.lo = x; b.loStrict = true }
        if let x = try scaled("maximum", .down) { b.hi = x }
        if let x = try scaled("exclusiveMaximum", .down), b.hi.map({ x <= $0 }) ?? true { b.hi = x; b.hiStrict = true }
        if b.lo == nil && b.hi == nil { return .number }
        guard [false, true].contains(where: { JSONSchemaState.viableNumber(b, negative: $0, mantissa: 0, digits: 0, fraction: -1) }) else {
            throw JSONSchema.Unsupported(path: path, reason: "no number of at most 17 digits lies within the minimum and maximum")
        }
        return .boundedNumber(b)
    }

    /// An integer node within its bounds (15 digits at most without them).
    func integer(_ obj: [String: Any], path: String) throws -> JSONSchema.Node {
        let limit = JSONSchemaState.integerLimit
        /// A bound as the nearest integer inside it (`rounding`), moved by `shift` when exclusive.
        func rounded(_ k: String, _ rounding: FloatingPointRoundingRule, _ shift: Int) throws -> Int? {
            try bound(obj, k, path: path).map { Int(max(min($0.rounded(rounding), 1e15), -1e15)) + shift }
        }
        let lo = max(-limit, try rounded("minimum", .up, 0) ?? -limit, try rounded("exclusiveMinimum", .down, 1) ?? -limit)
        let hi = min(limit, try rounded("maximum", .down, 0) ?? limit, try rounded("exclusiveMaximum", .up, -1) ?? limit)
        guard lo <= hi else { throw JSONSchema.Unsupported(path: path, reason: "no integer lies within the minimum and maximum") }
        return .integer(lo: lo, hi: hi)
    }
}

extension JSONSchemaState {
    /// Whether an integer begun with these digits (`digits` of them, magnitude `value`, or only its sign) can still end
    /// within [lo, hi]: some length j of further digits puts its range of values across the bounds.
    static func viable(_ negative: Bool, _ value: Int, _ digits: Int, _ lo: Int, _ hi: Int) -> Bool {
        if digits == 0 { return lo <= 0 }                       // "-": a negative number, or -0
        if value == 0 { return lo <= 0 && 0 <= hi }             // "0" or "-0": nothing may follow
        var scale = 1
        for _ in 0...(15 - digits) {
            let low = value * scale, high = value * scale + scale - 1
            let (a, b) = negative ? (-high, -low) : (low, high)
            if a <= hi && b >= lo { return true }
            scale *= 10
        }
        return false
    }

    /// Most digits of a bounded number (integer and fraction together): a double holds 17 significant digits.
    static let maxNumberDigits = 17

    /// The value a bounded number's text stands for, ±mantissa / 10^fraction, in units of 10^−17.
    static func value(_ negative: Bool, _ mantissa: Int, _ fraction: Int) -> Int128 {
        let m = Int128(mantissa) * NumberBounds.power(NumberBounds.scale - max(fraction, 0))
        return negative ? -m : m
    }

    /// Whether the number can end here: some digits, not right after its point, within the bounds.
    static func endable(_ b: NumberBounds, _ negative: Bool, _ mantissa: Int, _ digits: Int, _ fraction: Int) -> Bool {
        digits >= 1 && fraction != 0 && b.admits(value(negative, mantissa, fraction))
    }

    /// Whether a bounded number begun so (`digits` digits read as `mantissa`, `fraction` of them after the point, −1
    /// before it) can still end within the bounds with at most `maxNumberDigits` digits. The values it can end at are
    /// a grid: before the point, j more integer digits then up to r − j fraction digits ([v·10^j, (v+1)·10^j) in steps
    /// of 10^−(r−j)); after it, [x, x + 10^−k) in steps of 10^−(k+r), r being the digits left. Checked exactly (in
    /// decimal), so every token the mask lets through leaves a number that can still be finished.
    static func viableNumber(_ b: NumberBounds, negative: Bool, mantissa: Int, digits: Int, fraction: Int) -> Bool {
        let left = maxNumberDigits - digits
        if digits == 0 {                                          // only "-" (or nothing): some first digit
            return (0...9).contains { viableNumber(b, negative: negative, mantissa: $0, digits: 1, fraction: -1) }
        }
        let p = NumberBounds.power, scale = NumberBounds.scale
        if fraction >= 0 {
            // Right after the point ("1.") a digit must follow, which can still make x itself ("1.0").
            let x = value(false, mantissa, fraction)
            if left == 0 { return fraction > 0 && b.admits(negative ? -x : x) }
            return b.meetsGrid(from: x, below: x + p(scale - fraction), step: p(scale - fraction - left), negative: negative)
        }
        if mantissa == 0 {                                        // "0": a fraction may follow
            return b.meetsGrid(from: 0, below: p(scale), step: p(scale - left), negative: negative)
        }
        for j in 0...left {
            let v = Int128(mantissa) * p(scale + j)
            if b.meetsGrid(from: v, below: v + p(scale + j), step: p(scale - (left - j)), negative: negative) { return true }
        }
        return false
    }
}

/// `minimum`/`maximum` of a number, each inclusive or (`exclusiveMinimum`/`exclusiveMaximum`) strict, as exact
/// integers in units of 10^−17 (a bounded number's text has at most 17 digits, so every value it can stand for is
/// one; bounds are held to ±10^20).
public struct NumberBounds: Sendable, Equatable {
    public var lo: Int128?
    public var loStrict = false
    public var hi: Int128?
    public var hiStrict = false

    public init() {}

    static let scale = 17
    static let powers: [Int128] = (0...36).map { k in (0..<k).reduce(Int128(1)) { r, _ in r * 10 } }
    static func power(_ k: Int) -> Int128 { powers[k] }

    func admits(_ x: Int128) -> Bool {
        if let lo, loStrict ? x <= lo : x < lo { return false }
        if let hi, hiStrict ? x >= hi : x > hi { return false }
        return true
    }

    /// Whether some grid point a + n·step (n ≥ 0) below `b`, negated when `negative`, lies within the bounds.
    func meetsGrid(from a: Int128, below b: Int128, step: Int128, negative: Bool) -> Bool {
        // The bounds on the magnitude (the value is its negation when negative).
        let low = negative ? hi.map { -$0 } : lo, high = negative ? lo.map { -$0 } : hi
        let lowStrict = negative ? hiStrict : loStrict, highStrict = negative ? loStrict : hiStrict
        var p = a
        if let l = low, l >= a {
            // The first grid point at or above l (above it when strict).
            p = a + (l - a + step - 1) / step * step
            if lowStrict && p == l { p += step }
        }
        guard p < b else { return false }
        if let h = high { return highStrict ? p < h : p <= h }
        return true
    }
}
