import Foundation

/// vLLM's `--hf-overrides`: a JSON object whose top-level keys replace config.json's before the model is read
/// (the way Qwen's model cards turn on YaRN: `{"rope_scaling": {"rope_type": "yarn", "factor": 4.0,
/// "original_max_position_embeddings": 32768}}`).
public enum ConfigOverrides {
    /// config.json with `overrides` applied. A `rope_scaling` given over a config written by transformers 5 (which
    /// holds the rope in `rope_parameters`, read first) becomes that config's `rope_parameters`, keeping its
    /// `rope_theta` unless the override sets one.
    public static func apply(_ overrides: Data, to config: Data) throws -> Data {
        guard let o = try? JSONSerialization.jsonObject(with: overrides) as? [String: Any] else {
            throw ModelError.badConfig(file: "--hf-overrides", reason: "must be a JSON object of config.json keys, e.g. {\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}")
        }
        guard var c = try? JSONSerialization.jsonObject(with: config) as? [String: Any] else {
            throw ModelError.badConfig(file: "config.json", reason: "not a JSON object")
        }
        for (k, v) in o { c[k] = v }
        if let scaling = o["rope_scaling"], o["rope_parameters"] == nil, let old = c["rope_parameters"] as? [String: Any] {
            if var p = scaling as? [String: Any] {
                if p["rope_theta"] == nil, let theta = old["rope_theta"] { p["rope_theta"] = theta }
                c["rope_parameters"] = p
            } else {
                c["rope_parameters"] = old.filter { $0.key == "rope_theta" }   // rope_scaling null: back to default
            }
            c["rope_scaling"] = nil
        }
        return try JSONSerialization.data(withJSONObject: c, options: [.sortedKeys])
    }
}
