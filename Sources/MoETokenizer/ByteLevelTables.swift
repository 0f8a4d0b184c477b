import Foundation

/// The GPT-2 byte <-> printable-character bijection used by the ByteLevel
/// pre-tokenizer and decoder: printable Latin-1 bytes map to themselves,
/// the remaining 68 bytes map to U+0100... in increasing byte order.
enum ByteLevelTables {
    /// byte -> scalar value of its stand-in character.
    static let byteToChar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var printable = [Bool](repeating: false, count: 256)
        for b in 0x21...0x7E { printable[b] = true }
        for b in 0xA1...0xAC { printable[b] = true }
        for b in 0xAE...0xFF { printable[b] = true }
        var n: UInt32 = 0
        for b in 0..<256 {
            if printable[b] {
                table[b] = UInt32(b)
            } else {
                table[b] = 256 + n
                n += 1
            }
        }
        return table
    }()

    /// scalar value -> byte, for scalars < 0x144 (the whole image of the
    /// map); -1 where the scalar is not a stand-in.
    static let charToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, c) in byteToChar.enumerated() { table[Int(c)] = Int16(b) }
        return table
    }()

    /// UTF-8 of the stand-in character for each byte.
    static let byteToUTF8: [[UInt8]] = byteToChar.map { c in
        var out = [UInt8]()
        UTF8Util.append(c, to: &out)
        return out
    }

    /// Inverse of the map for a whole token; nil if any character is not a
    /// stand-in (the ByteLevel decoder then keeps the token's own UTF-8).
    static func decode(_ token: String) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            let v = Int(s.value)
            guard v < charToByte.count, charToByte[v] >= 0 else { return nil }
            out.append(UInt8(charToByte[v]))
        }
        return out
    }
}
