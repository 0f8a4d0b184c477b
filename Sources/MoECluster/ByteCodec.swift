/// Little-endian packing of the draft protocol's messages.
struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func put(_ v: Float) { put(v.bitPattern) }
    mutating func put(_ a: [Int32]) { put(Int32(a.count)); for v in a { put(v) } }
    mutating func put(_ a: [Float]) {
        put(Int32(a.count))
        a.withUnsafeBytes { bytes += $0 }
    }
}

struct ByteReader {
    let bytes: [UInt8]
    var at = 0
    init(_ b: [UInt8]) { bytes = b }
    mutating func get<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        var v: T = 0
        withUnsafeMutableBytes(of: &v) { dst in
            bytes.withUnsafeBytes { dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[at..<(at + MemoryLayout<T>.size)])) }
        }
        at += MemoryLayout<T>.size
        return T(littleEndian: v)
    }
    mutating func float() -> Float { Float(bitPattern: get(UInt32.self)) }
    mutating func ints() -> [Int32] { (0..<Int(get(Int32.self))).map { _ in get(Int32.self) } }
    mutating func floats() -> [Float] {
        let n = Int(get(Int32.self))
        let out = bytes.withUnsafeBytes { raw in
            (0..<n).map { i in Float(bitPattern: raw.loadUnaligned(fromByteOffset: at + 4 * i, as: UInt32.self)) }
        }
        at += 4 * n
        return out
    }
}
