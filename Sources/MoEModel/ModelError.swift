import Foundation

/// Everything that can be wrong with a checkpoint directory, each with the detail a user needs to fix it.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case missingFile(String)
    case badConfig(file: String, reason: String)
    case unknownModelType(String, supported: [String])
    case badHeader(file: String, reason: String)
    case truncated(file: String, needed: Int, size: Int)
    case missingTensor(String, where: String)
    case shapeMismatch(tensor: String, expected: [Int], found: [Int])
    case unsupportedDType(tensor: String, dtype: String)
    /// A float8 or int8 tensor without a `_scale_inv` or `_scale` sibling.
    case missingScales(tensor: String, dtype: String)
    case badTensor(tensor: String, reason: String)
    case unsupported(String)
    case cannotConvert(tensor: String, to: String, reason: String)

    public var description: String {
        switch self {
        case .missingFile(let p):
            return "missing file: \(p)"
        case .badConfig(let f, let r):
            return "invalid \(f): \(r)"
        case .unknownModelType(let t, let s):
            return "unknown model_type '\(t)' in config.json (supported: \(s.joined(separator: ", ")))"
        case .badHeader(let f, let r):
            return "bad safetensors header in \(f): \(r)"
        case .truncated(let f, let n, let s):
            return "truncated safetensors file \(f): tensor data needs \(n) bytes but the file has \(s)"
        case .missingTensor(let n, let w):
            return "missing tensor \(n) in \(w)"
        case .shapeMismatch(let n, let e, let f):
            return "tensor \(n) has shape \(f), expected \(e)"
        case .unsupportedDType(let n, let d):
            return "tensor \(n) has dtype \(d), which is not supported (F32, F16, BF16; F8_E4M3, F8_E5M2 and I8 with scales; MXFP4 as U8 blocks and scales)"
        case .missingScales(let n, let d):
            return "tensor \(n) is stored as \(d), which needs scales, but the checkpoint has none for it: expected \(n)_scale_inv "
                + "(blocks of quantization_config.weight_block_size) or \(n)_scale (per tensor, row, group or block)"
        case .badTensor(let n, let r):
            return "tensor \(n): \(r)"
        case .unsupported(let what):
            return "unsupported: \(what)"
        case .cannotConvert(let n, let f, let reason):
            return "\(n) cannot be stored as \(f): \(reason) (use f32, f16 or bf16 for this role)"
        }
    }
}
