import Foundation

/// Paths of the checked-in fixtures and golden files, and helpers that read transformers' golden outputs.
public enum Fixtures {
    /// Tests/ of this package.
    public static let testsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    public static let root = testsDir.appendingPathComponent("Fixtures")
    public static let packageRoot = testsDir.deletingLastPathComponent()

    public static func model(_ name: String) -> URL { root.appendingPathComponent(name) }

    /// Models with their own golden directory, and the layouts that share another's golden.
    public static let goldenModels = ["tiny-mixtral", "tiny-mixtral-bf16", "tiny-qwen2-moe", "tiny-qwen3-moe",
                                      "tiny-mistral-sp", "tiny-mixtral-spec"]
    public static let sameWeightsAs = ["tiny-mixtral-fused": "tiny-mixtral", "tiny-mixtral-sharded": "tiny-mixtral"]

    public static func golden(_ name: String) throws -> Golden {
        let dir = model(sameWeightsAs[name] ?? name).appendingPathComponent("golden")
        let data = try Data(contentsOf: dir.appendingPathComponent("golden.json"))
        var g = try JSONDecoder().decode(Golden.self, from: data)
        g.directory = dir
        return g
    }

    /// Where this test process's temporary directories go: one directory per process, removed when it exits, so a
    /// test that stops early (or forgets) leaves nothing behind in /tmp.
    static let tempRoot: URL = {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("moe-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        atexit {
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("moe-tests-\(getpid())")
            try? FileManager.default.removeItem(at: root)
        }
        return root
    }()

    /// A fresh temporary directory (removed with the others when the test process exits).
    public static func tempDir(_ tag: String = "moe") -> URL {
        let u = tempRoot.appendingPathComponent("\(tag)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }

    /// A copy of a fixture directory that a test may break.
    public static func copy(_ name: String) throws -> URL {
        let dst = tempDir(name)
        for f in try FileManager.default.contentsOfDirectory(atPath: model(name).path) where f != "golden" {
            try FileManager.default.copyItem(at: model(name).appendingPathComponent(f), to: dst.appendingPathComponent(f))
        }
        return dst
    }
}

public struct Golden: Decodable {
    public var directory: URL = URL(fileURLWithPath: "/")
    public let prompts: [Prompt]
    public let eosTokenIds: [Int]

    enum CodingKeys: String, CodingKey { case prompts, eosTokenIds = "eos_token_ids" }

    public struct Prompt: Decodable {
        public let index: Int
        public let text: String
        public let ids: [Int]
        public let logitsFile: String
        public let logitsShape: [Int]
        public let greedy: Greedy
        public let router: [RouterLayer]?
        public let assisted: Assisted?
        enum CodingKeys: String, CodingKey {
            case index, text, ids, greedy, router, assisted
            case logitsFile = "logits_file", logitsShape = "logits_shape"
        }
    }

    public struct Greedy: Decodable {
        public let maxNew: Int
        public let newTokens: [Int]
        public let top2Margin: [Float]
        enum CodingKeys: String, CodingKey { case maxNew = "max_new", newTokens = "new_tokens", top2Margin = "top2_margin" }
    }

    public struct RouterLayer: Decodable {
        public let layer: Int
        public let counts: [Int]
        public let experts: [[Int]]
        public let weights: [[Float]]
        public let routerLogits: [[Float]]
        public let sharedExpertGate: [Float]?
        enum CodingKeys: String, CodingKey {
            case layer, counts, experts, weights
            case routerLogits = "router_logits", sharedExpertGate = "shared_expert_gate"
        }
    }

    public struct Assisted: Decodable {
        public let hfAssistedGreedy: [Int]
        public let draftGreedy: [Int]
        public let speculative: Speculative
        enum CodingKeys: String, CodingKey {
            case hfAssistedGreedy = "hf_assisted_greedy", draftGreedy = "draft_greedy", speculative
        }
    }

    public struct Speculative: Decodable {
        public let k: Int
        public let output: [Int]
        public let proposed: Int
        public let accepted: Int
    }

    /// transformers' logits of prompt i: [T, vocab] row-major.
    public func logits(_ p: Prompt) throws -> [Float] {
        let data = try Data(contentsOf: directory.appendingPathComponent(p.logitsFile))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}
