import Foundation
import MoECore

/// A Hugging Face checkpoint directory: `config.json` plus one `model.safetensors` or shards listed by
/// `model.safetensors.index.json`. Tensors are found by name across shards and read from the memory maps.
public final class Checkpoint: @unchecked Sendable {
    public let directory: URL
    public let configData: Data
    public let files: [SafetensorsFile]
    private let index: [String: (file: Int, entry: TensorEntry)]

    /// Bytes of weights this process converted or mapped through `matrix`/`vector` (what it holds).
    public private(set) var bytesHeld = 0
    private let lock = NSLock()

    /// `configOverrides` (vLLM's --hf-overrides, a JSON object) replaces config.json's top-level keys.
    public init(directory: URL, configOverrides: Data? = nil) throws {
        self.directory = directory
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw ModelError.missingFile("\(directory.path) (expected a checkpoint directory)")
        }
        let configURL = directory.appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configURL.path) else {
            throw ModelError.missingFile(configURL.path)
        }
        configData = try configOverrides.map { try ConfigOverrides.apply($0, to: data) } ?? data
        let indexURL = directory.appendingPathComponent("model.safetensors.index.json")
        var shardNames: [String]
        if FileManager.default.fileExists(atPath: indexURL.path) {
            guard let d = FileManager.default.contents(atPath: indexURL.path),
                  let obj = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
                  let map = obj["weight_map"] as? [String: String] else {
                throw ModelError.badConfig(file: "model.safetensors.index.json", reason: "no weight_map object")
            }
            shardNames = Array(Set(map.values)).sorted()
        } else {
            let single = directory.appendingPathComponent("model.safetensors")
            if FileManager.default.fileExists(atPath: single.path) {
                shardNames = ["model.safetensors"]
            } else {
                let all = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
                shardNames = all.filter { $0.hasSuffix(".safetensors") }.sorted()
                if shardNames.isEmpty { throw ModelError.missingFile(single.path) }
            }
        }
        files = try shardNames.map { try SafetensorsFile(url: directory.appendingPathComponent($0)) }
        var idx: [String: (Int, TensorEntry)] = [:]
        for (i, f) in files.enumerated() {
            for (name, e) in f.entries { idx[name] = (i, e) }
        }
        index = idx
    }

    public var tensorNames: [String] { index.keys.sorted() }
    public func has(_ name: String) -> Bool { index[name] != nil }
    public func entry(_ name: String) -> TensorEntry? { index[name]?.entry }

    /// A stable fingerprint of config.json, the tensor index (names, dtypes, shapes) and a sample of each file's
    /// tensor bytes (its first and last 4 KiB), to check that several processes (hosts) see the same model without
    /// reading it all.
    public var fingerprint: UInt64 {
        var h: UInt64 = 0xcbf29ce484222325
        func mix(_ bytes: some Sequence<UInt8>) { for b in bytes { h = (h ^ UInt64(b)) &* 0x100000001b3 } }
        mix(configData)
        for name in tensorNames {
            let e = index[name]!.entry
            mix(Array("\(name)|\(e.dtypeName)|\(e.shape)".utf8))
        }
        for f in files {
            let n = f.mapping.size, k = min(4096, n)
            mix(UnsafeRawBufferPointer(start: f.mapping.base, count: k))
            mix(UnsafeRawBufferPointer(start: f.mapping.base + (n - k), count: k))
        }
        return h
    }

    private func locate(_ name: String) throws -> (SafetensorsFile, TensorEntry) {
        guard let (fi, e) = index[name] else {
            throw ModelError.missingTensor(name, where: directory.path)
        }
        return (files[fi], e)
    }

    /// The tensor `name` as an f32 matrix [rows, cols] (a 1-D tensor is one row). f32 data stays in the mapping;
    /// f16/bf16 are converted once into owned storage. `expected` is the shape the model needs.
    public func matrix(_ name: String, shape expected: [Int]) throws -> Matrix {
        let (file, e) = try locate(name)
        guard e.shape == expected else { throw ModelError.shapeMismatch(tensor: name, expected: expected, found: e.shape) }
        let cols = expected.last ?? 1
        let rows = expected.count <= 1 ? 1 : expected.dropLast().reduce(1, *)
        return try load(file, e, rows: rows, cols: cols)
    }

    /// Rows [start, start+count) of a tensor viewed as [rows, cols] — used for one expert of a fused expert tensor,
    /// so a process converts only the experts it holds.
    public func matrixSlice(_ name: String, shape expected: [Int], rowStart: Int, rowCount: Int) throws -> Matrix {
        let (file, e) = try locate(name)
        guard e.shape == expected else { throw ModelError.shapeMismatch(tensor: name, expected: expected, found: e.shape) }
        let cols = expected.last ?? 1
        guard let dtype = e.dtype else { throw ModelError.unsupportedDType(tensor: name, dtype: e.dtypeName) }
        let sub = TensorEntry(name: name, dtypeName: e.dtypeName, shape: [rowCount, cols],
                              offset: e.offset + rowStart * cols * dtype.size, byteCount: rowCount * cols * dtype.size)
        return try load(file, sub, rows: rowCount, cols: cols)
    }

    public func vector(_ name: String, count: Int) throws -> Matrix {
        try matrix(name, shape: [count])
    }

    private func load(_ file: SafetensorsFile, _ e: TensorEntry, rows: Int, cols: Int) throws -> Matrix {
        guard let dtype = e.dtype else { throw ModelError.unsupportedDType(tensor: e.name, dtype: e.dtypeName) }
        let n = rows * cols
        let src = file.pointer(e)
        lock.lock(); bytesHeld += n * 4; lock.unlock()
        switch dtype {
        case .f32:
            if Int(bitPattern: src) % MemoryLayout<Float>.alignment == 0 {
                return Matrix(rows: rows, cols: cols, base: src.assumingMemoryBound(to: Float.self), owner: file.mapping)
            }
            let buf = FloatBuffer(count: n, zeroed: false)
            UnsafeMutableRawPointer(buf.pointer).copyMemory(from: src, byteCount: n * 4)
            file.mapping.release(from: src, count: n * 4)
            return Matrix(buf, rows: rows, cols: cols)
        case .bf16, .f16:
            let buf = FloatBuffer(count: n, zeroed: false)
            let halfs: UnsafePointer<UInt16>
            var tmp: UnsafeMutablePointer<UInt16>?
            if Int(bitPattern: src) % 2 == 0 {
                halfs = src.assumingMemoryBound(to: UInt16.self)
            } else {
                tmp = .allocate(capacity: n)
                UnsafeMutableRawPointer(tmp!).copyMemory(from: src, byteCount: n * 2)
                halfs = UnsafePointer(tmp!)
            }
            if dtype == .bf16 { bf16ToF32(halfs, buf.pointer, n) } else { f16ToF32(halfs, buf.pointer, n) }
            tmp?.deallocate()
            file.mapping.release(from: src, count: n * 2)
            return Matrix(buf, rows: rows, cols: cols)
        }
    }
}
