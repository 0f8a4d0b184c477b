import CKernels
import Foundation

/// Owned, 64-byte-aligned storage of `count` floats. A class so that views (`Matrix`) can keep it alive.
public final class FloatBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(count: Int, zeroed: Bool = true) {
        self.count = count
        var raw: UnsafeMutableRawPointer?
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        if zeroed { pointer.initialize(repeating: 0, count: max(count, 1)) }
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count, zeroed: false)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { free(pointer) }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
    public var array: [Float] { Array(buffer) }

    public subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }
}

/// Gives the heap's free pages back to the system. For the end of loading: its f32 temporaries of conversion come
/// from the heap once glibc has raised its mmap threshold, and would otherwise stay with the process.
public func returnFreeMemory() { kern_return_free_memory() }

/// A growable scratch area reused across forward passes: `ensure` only reallocates when asked for more.
public final class Scratch: @unchecked Sendable {
    private var storage = FloatBuffer(count: 0)
    public init() {}
    public func ensure(_ count: Int) -> UnsafeMutablePointer<Float> {
        if storage.count < count { storage = FloatBuffer(count: count, zeroed: false) }
        return storage.pointer
    }
}
