import Foundation
import MoETestSupport
import Testing

/// Three hosts made of network namespaces (Deploy/local-cluster.sh): the coordinator and two expert workers talk
/// TCP across them, as on real machines.
@Suite(.serialized) struct MultiHostTests {
    static var canMakeHosts: Bool { getuid() == 0 && (FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip")) }

    @Test(.enabled(if: MultiHostTests.canMakeHosts, "needs root and iproute2 to create network namespaces"))
    func threeHostClusterMatchesTransformers() throws {
        let script = Fixtures.packageRoot.appendingPathComponent("Deploy/local-cluster.sh")
        let g = try Fixtures.golden("tiny-qwen3-moe")
        let p = g.prompts[2]
        let out = Fixtures.tempDir("hosts").appendingPathComponent("l.f32")
        let r = try Binaries.run(URL(fileURLWithPath: "/bin/bash"), [script.path, "3", "--", Binaries.path("moe-serve").path,
            "logits", "--model", Fixtures.model("tiny-qwen3-moe").path, "--ids", p.ids.map(String.init).joined(separator: ","),
            "--out", out.path], environment: ["MOE_THREADS": "1"], timeout: 120)
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        // Each rank ran on its own fake host.
        #expect(r.stderr.contains("rank 1 (worker 1): holds 16 experts") && r.stderr.contains("rank 2 (worker 2): holds 16 experts"))
        let ours = try Data(contentsOf: out).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let ref = try g.logits(p)
        #expect(ours.count == ref.count && zip(ours, ref).allSatisfy { abs($0 - $1) < 1e-3 })

        let short = g.prompts[1]
        let gen = try Binaries.run(URL(fileURLWithPath: "/bin/bash"), [script.path, "3", "--", Binaries.path("moe-serve").path,
            "run", "--model", Fixtures.model("tiny-qwen3-moe").path, "--prompt-ids", short.ids.map(String.init).joined(separator: ","),
            "--max-tokens", "\(short.greedy.maxNew)", "--json"], environment: ["MOE_THREADS": "1"], timeout: 120)
        let obj = try JSONSerialization.jsonObject(with: Data(gen.stdout.utf8)) as? [String: Any]
        #expect(obj?["ids"] as? [Int] == short.greedy.newTokens, "\(gen.stderr)")
        // Nothing is left behind.
        let ns = try Binaries.run(URL(fileURLWithPath: "/usr/sbin/ip"), ["netns", "list"])
        #expect(!ns.stdout.contains("moe-"))
    }
}
