import Foundation
import MoECore

/// Storage dtypes this loader converts from.
public enum StorageDType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"
    public var size: Int { self == .f32 ? 4 : 2 }
}

/// One tensor's entry in a safetensors header. `offset` is absolute within the file.
public struct TensorEntry: Sendable {
    public let name: String
    public let dtypeName: String
    public let shape: [Int]
    public let offset: Int
    public let byteCount: Int
    public var dtype: StorageDType? { StorageDType(rawValue: dtypeName) }
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped `.safetensors` file: 8-byte little-endian header length, JSON header, then raw tensor data.
/// The header is validated fully at open so a damaged file fails before any weight is used.
public final class SafetensorsFile: @unchecked Sendable {
    public let url: URL
    public let mapping: MappedFile
    public let entries: [String: TensorEntry]

    private static let byteSizes: [String: Int] = [
        "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
        "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
    ]

    public init(url: URL) throws {
        self.url = url
        let name = url.lastPathComponent
        guard FileManager.default.fileExists(atPath: url.path) else { throw ModelError.missingFile(url.path) }
        mapping = try MappedFile(url: url)
        let size = mapping.size
        guard size >= 8 else { throw ModelError.badHeader(file: name, reason: "file is \(size) bytes, shorter than the 8-byte header length") }
        let headerLength = Int(mapping.base.loadUnaligned(as: UInt64.self).littleEndian)
        guard headerLength > 0, headerLength <= size - 8 else {
            throw ModelError.badHeader(file: name, reason: "header length \(headerLength) does not fit in a file of \(size) bytes")
        }
        let headerData = Data(bytes: mapping.base + 8, count: headerLength)
        guard let json = try? JSONSerialization.jsonObject(with: headerData), let header = json as? [String: Any] else {
            throw ModelError.badHeader(file: name, reason: "header is not a JSON object")
        }
        let dataStart = 8 + headerLength
        var entries: [String: TensorEntry] = [:]
        for (key, value) in header where key != "__metadata__" {
            guard let info = value as? [String: Any],
                  let dtype = info["dtype"] as? String,
                  let shapeAny = info["shape"] as? [Any],
                  let offsetsAny = info["data_offsets"] as? [Any], offsetsAny.count == 2 else {
                throw ModelError.badHeader(file: name, reason: "entry \(key) lacks dtype, shape or data_offsets")
            }
            let shape = try shapeAny.map { v -> Int in
                guard let n = (v as? NSNumber)?.intValue, n >= 0 else {
                    throw ModelError.badHeader(file: name, reason: "entry \(key) has a bad shape \(shapeAny)")
                }
                return n
            }
            guard let begin = (offsetsAny[0] as? NSNumber)?.intValue, let end = (offsetsAny[1] as? NSNumber)?.intValue,
                  begin >= 0, end >= begin else {
                throw ModelError.badHeader(file: name, reason: "entry \(key) has bad data_offsets \(offsetsAny)")
            }
            if let width = Self.byteSizes[dtype] {
                let expected = shape.reduce(1, *) * width
                guard expected == end - begin else {
                    throw ModelError.badHeader(file: name, reason: "entry \(key) spans \(end - begin) bytes but \(dtype) \(shape) needs \(expected)")
                }
            }
            guard dataStart + end <= size else {
                throw ModelError.truncated(file: name, needed: dataStart + end, size: size)
            }
            entries[key] = TensorEntry(name: key, dtypeName: dtype, shape: shape, offset: dataStart + begin, byteCount: end - begin)
        }
        self.entries = entries
    }

    public func pointer(_ e: TensorEntry) -> UnsafeRawPointer { mapping.base + e.offset }
}
