import Foundation

/// A read-only memory map of a whole file. Pages are read lazily by the kernel, so tensors a process never touches
/// cost no memory; f32 tensors are used in place.
public final class MappedFile: @unchecked Sendable {
    public let url: URL
    public let base: UnsafeRawPointer
    public let size: Int

    public enum Failure: Error, CustomStringConvertible {
        case cannotOpen(String, String)
        case cannotMap(String, String)
        public var description: String {
            switch self {
            case .cannotOpen(let path, let why): return "cannot open \(path): \(why)"
            case .cannotMap(let path, let why): return "cannot map \(path): \(why)"
            }
        }
    }

    public init(url: URL) throws {
        self.url = url
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw Failure.cannotOpen(url.path, String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Failure.cannotOpen(url.path, String(cString: strerror(errno))) }
        size = Int(st.st_size)
        if size == 0 {
            base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64))
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw Failure.cannotMap(url.path, String(cString: strerror(errno)))
        }
        base = UnsafeRawPointer(p)
    }

    /// Lets the kernel drop the resident pages of bytes [from, from + count) once their contents have been converted
    /// into owned storage, so that a model loaded as f16/int8/int4 does not keep its f32/bf16 file in memory too.
    /// Whole pages only (a page shared with a tensor still in use stays). The mapping is private and never written:
    /// a later read of these bytes reads the file again, so this only frees memory, never changes what is read.
    public func release(from pointer: UnsafeRawPointer, count: Int) {
        guard size > 0, count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: pointer), lo = Int(bitPattern: base), hi = lo + size
        guard start >= lo, start + count <= hi else { return }
        let first = (start + page - 1) / page * page, last = (start + count) / page * page
        guard last > first else { return }
        _ = madvise(UnsafeMutableRawPointer(bitPattern: first), last - first, MADV_DONTNEED)
    }

    deinit {
        if size > 0 { munmap(UnsafeMutableRawPointer(mutating: base), size) }
        else { UnsafeMutableRawPointer(mutating: base).deallocate() }
    }
}
