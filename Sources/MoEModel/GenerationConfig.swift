import Foundation

/// `generation_config.json`: which tokens end generation (eos_token_id may be one id or a list).
public struct GenerationConfig: Codable, Sendable {
    var eosTokenId: IntOrList?
    var bosTokenId: Int?
    enum CodingKeys: String, CodingKey { case eosTokenId = "eos_token_id", bosTokenId = "bos_token_id" }

    public var eosTokenIds: [Int] { eosTokenId?.values ?? [] }

    /// EOS ids from DIR/generation_config.json, falling back to config.json's.
    public static func eosTokenIds(directory: URL, spec: ModelSpec) -> [Int] {
        let url = directory.appendingPathComponent("generation_config.json")
        if let d = FileManager.default.contents(atPath: url.path),
           let g = try? JSONDecoder().decode(GenerationConfig.self, from: d), !g.eosTokenIds.isEmpty {
            return g.eosTokenIds
        }
        return spec.eosTokenIds
    }
}
