import CKernels

/// One query head over positions [p0, p1) of a sequence in the paged cache; writes out [headDim].
@inline(__always)
func kern_attend(_ q: UnsafePointer<Float>, _ kpool: UnsafePointer<Float>, _ vpool: UnsafePointer<Float>,
                 _ blocks: UnsafePointer<Int32>, _ cache: KVCache, _ kvHead: Int, _ p0: Int, _ p1: Int, _ scale: Float,
                 _ scores: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
    kern_attend_f32(q, kpool, vpool, blocks, Int32(cache.blockSize), Int32(cache.kvHeads), Int32(cache.headDim),
                    Int32(kvHead), Int32(p0), Int32(p1), scale, scores, out)
}
