import Foundation

/// How GPTQ (AutoGPTQ, GPTQModel) and AWQ (AutoAWQ's GEMM layout) checkpoints store a linear layer `NAME`: integer
/// codes in little-endian int32 words, transposed (`[in, out]`, as x·W), with one scale and one zero point per group of
/// input columns and output: W[o, i] = (q[i, o] − z[g(i), o]) · s[g(i), o], in f32 (the stored scales are f16 or bf16, so
/// every product is exact). `NAME.scales` is [groups, out]; GPTQ's `NAME.g_idx` [in] gives g(i) (desc_act orders
/// the groups by activation), otherwise g(i) = i / group_size.
public struct GroupedIntLayout: Sendable, Equatable {
    public enum Packing: Sendable, Equatable {
        /// GPTQ: `qweight` [in · bits / 32, out], each output's inputs a dense stream of fields down its column
        /// (field i at bits [i · bits, (i + 1) · bits) of the column's words, lowest first: 32 / bits a word, or at
        /// 3 bits 32 inputs in 3 words, fields 10 and 21 straddling two); `qzeros` [groups, out · bits / 32], each
        /// group's outputs a stream along its row. v1 checkpoints (checkpoint_format "gptq", every AutoGPTQ release)
        /// store each zero point less one, which GPTQModel restores by adding 1 to every field of a word at once (a
        /// field's carry goes into the next) at 2, 4 and 8 bits, and field by field (modulo 8) at 3.
        case gptq(v1: Bool)
        /// AWQ: `qweight` [in, out / 8] and `qzeros` [groups, out / 8], each word eight consecutive outputs' 4-bit
        /// codes in the order 0, 2, 4, 6, 1, 3, 5, 7 (output j of a word in field AWQ.field[j]).
        case awq
    }

    public let packing: Packing
    /// Bits per code: 2, 3, 4 or 8 for GPTQ, 4 for AWQ.
    public let bits: Int
    /// Input columns per group; nil for one group over the whole row (GPTQ's group_size −1).
    public let groupSize: Int?

    public init(packing: Packing, bits: Int, groupSize: Int?) {
        self.packing = packing
        self.bits = bits
        self.groupSize = groupSize
    }

    /// Field of output j (0 … 7) of an AWQ word: the inverse of AutoAWQ's packing order [0, 2, 4, 6, 1, 3, 5, 7].
    public static let awqField = [0, 4, 1, 5, 2, 6, 3, 7]

    var perWord: Int { 32 / bits }
    var mask: UInt32 { UInt32((1 << bits) - 1) }

    /// Groups of a row of `inputs` columns.
    public func groups(inputs: Int) -> Int { groupSize.map { (inputs + $0 - 1) / $0 } ?? 1 }

    /// The shapes of qweight and qzeros for a [out, in] weight.
    public func shapes(out: Int, inputs: Int) -> (qweight: [Int], qzeros: [Int]) {
        let g = groups(inputs: inputs)
        switch packing {
        case .gptq: return ([inputs * bits / 32, out], [g, out * bits / 32])
        case .awq: return ([inputs, out / perWord], [g, out / perWord])
        }
    }

    /// Why a [out, in] weight cannot be stored this way (its codes would straddle words), or nil.
    public func misfit(out: Int, inputs: Int) -> String? {
        switch packing {
        case .gptq:
            let n = 32 / gcd(bits, 32)      // codes that fill whole words: 32 / bits, or 32 at 3 bits
            if inputs % n != 0 { return "\(inputs) inputs are not a multiple of the \(n) codes that fill whole words" }
            if out % n != 0 { return "\(out) outputs are not a multiple of the \(n) zero points that fill whole words" }
        case .awq:
            if out % perWord != 0 { return "\(out) outputs are not a multiple of the \(perWord) codes a word holds" }
        }
        return nil
    }

    private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    /// The word added to each v1 GPTQ zero-point word at 2, 4 and 8 bits: 1 in every field.
    var v1Correction: UInt32 { (0..<perWord).reduce(0) { $0 | (1 << UInt32($1 * bits)) } }

    /// Outputs [r0, r0 + rows) of the weight as f32 rows of `inputs` values (`dst` holds rows × inputs). `scales` is
    /// [groups, out] as f32, `group` the group of each input (nil: i / groupSize). Every code and zero point is a field
    /// of a dense stream (WeightScales.denseField): GPTQ's codes down output o's column, AWQ's along input i's row at
    /// output o's field, both layouts' zero points along group g's row.
    public func dequantize(qweight: UnsafeRawPointer, qzeros: UnsafeRawPointer, scales: [Float], group: [Int32]?,
                           out: Int, inputs: Int, r0: Int, rows: Int, into dst: UnsafeMutablePointer<Float>) {
        func word(_ p: UnsafeRawPointer, _ i: Int) -> UInt32 {
            UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
        }
        let v1 = packing == .gptq(v1: true), wordAligned = 32 % bits == 0
        // v1's zero points less one: restored by a word add (carries included) where fields fill words, field by
        // field at 3 bits, as GPTQModel restores them.
        let carry: UInt32 = v1 && wordAligned ? v1Correction : 0, perField: UInt32 = v1 && !wordAligned ? 1 : 0
        let rowWords = out * bits / 32, groupCount = groups(inputs: inputs)
        let groupOf: [Int] = group.map { $0.map(Int.init) } ?? (0..<inputs).map { i in groupSize.map { i / $0 } ?? 0 }
        var zeros = [Float](repeating: 0, count: groupCount)
        scales.withUnsafeBufferPointer { s in
            for (k, o) in (r0..<(r0 + rows)).enumerated() {
                let field = packing == .awq ? o / perWord * perWord + Self.awqField[o % perWord] : o
                for g in 0..<groupCount {
                    let z = WeightScales.denseField(field, bits: bits) { word(qzeros, g * rowWords + $0) &+ carry }
                    zeros[g] = Float((z &+ perField) & mask)
                }
                let row = dst + k * inputs
                for i in 0..<inputs {
                    let q = packing == .awq
                        ? WeightScales.denseField(field, bits: bits) { word(qweight, i * rowWords + $0) }
                        : WeightScales.denseField(i, bits: bits) { word(qweight, $0 * out + o) }
                    let g = groupOf[i]
                    row[i] = (Float(q) - zeros[g]) * s[g * out + o]
                }
            }
        }
    }
}
