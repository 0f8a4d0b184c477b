import Foundation
import MoECore

/// Writes a `.safetensors` file tensor by tensor without holding the model in memory: the header (names, dtypes,
/// shapes, offsets) is fixed up front, then each tensor's bytes are appended in the declared order.
public final class SafetensorsWriter {
    public struct Planned { public let name: String; public let dtype: StorageDType; public let shape: [Int] }
    private let handle: FileHandle
    private let plan: [Planned]
    private var next = 0

    public init(url: URL, tensors: [Planned], metadata: [String: String] = ["format": "pt"]) throws {
        plan = tensors
        var header: [String: Any] = ["__metadata__": metadata]
        var offset = 0
        for t in tensors {
            let bytes = t.shape.reduce(1, *) * t.dtype.size
            header[t.name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (json.count + 8) % 8 != 0 { json.append(0x20) }   // pad so tensor data starts 8-byte aligned
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        handle = try FileHandle(forWritingTo: url)
        var len = UInt64(json.count).littleEndian
        try handle.write(contentsOf: Data(bytes: &len, count: 8))
        try handle.write(contentsOf: json)
    }

    /// Appends the next planned tensor; `values` are f32 and converted to its dtype.
    public func write(_ name: String, _ values: [Float]) throws {
        guard next < plan.count, plan[next].name == name else {
            throw ModelError.unsupported("tensor \(name) written out of the planned order")
        }
        let t = plan[next]
        precondition(values.count == t.shape.reduce(1, *), "\(name): \(values.count) values for shape \(t.shape)")
        next += 1
        switch t.dtype {
        case .f32:
            try values.withUnsafeBytes { try handle.write(contentsOf: Data($0)) }
        case .bf16, .f16:
            var half = [UInt16](repeating: 0, count: values.count)
            values.withUnsafeBufferPointer { src in
                half.withUnsafeMutableBufferPointer { dst in
                    if t.dtype == .bf16 { f32ToBF16(src.baseAddress!, dst.baseAddress!, values.count) }
                    else { f32ToF16(src.baseAddress!, dst.baseAddress!, values.count) }
                }
            }
            try half.withUnsafeBytes { try handle.write(contentsOf: Data($0)) }
        }
    }

    public func close() throws {
        guard next == plan.count else { throw ModelError.unsupported("only \(next) of \(plan.count) tensors were written") }
        try handle.close()
    }
}
