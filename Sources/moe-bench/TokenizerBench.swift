import ArgumentParser
import Foundation
import MoEModel
import MoETokenizer

struct TokenizerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Single-thread encoding throughput (MB/s) on ~1 MB of mixed text, beside the Python `tokenizers` library when installed.")

    @Option(help: "tokenizer.json or a directory holding it (default: the bundled demo model's).") var tokenizer: String?
    @Option(help: "Text file to encode instead of the generated mixed text.") var file: String?
    @Option(help: "Timed runs (best is reported).") var runs = 5

    func run() throws {
        guard let path = tokenizer ?? BundledModels.path().map({ $0 + "/tokenizer.json" }) else {
            throw ValidationError("no --tokenizer given and Models/demo-mixtral not found")
        }
        print(try TokenizerBenchmark.run(tokenizerPath: URL(fileURLWithPath: path), textFile: file.map { URL(fileURLWithPath: $0) }, runs: runs))
    }
}

/// Single-thread encode throughput of MoETokenizer, compared (when the
/// Python `tokenizers` package is importable) against the Rust library on
/// the same text and tokenizer, including an id-for-id equality check.
enum TokenizerBenchmark {
    /// - Parameters:
    ///   - tokenizerPath: a tokenizer.json file or a directory containing one.
    ///   - textFile: UTF-8 text to encode; nil = ~1 MB of generated mixed text.
    ///   - runs: timed repetitions; the best is reported.
    /// - Returns: the result table as text.
    static func run(tokenizerPath: URL, textFile: URL?, runs: Int = 5) throws -> String {
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: tokenizerPath.path, isDirectory: &isDir)
        let jsonURL = isDir.boolValue ? tokenizerPath.appendingPathComponent("tokenizer.json") : tokenizerPath
        let tokenizer: Tokenizer
        let loadClock = ContinuousClock()
        let loadStart = loadClock.now
        if isDir.boolValue {
            tokenizer = try Tokenizer(directory: tokenizerPath)
        } else {
            guard let data = try? Data(contentsOf: jsonURL) else {
                throw TokenizerError("cannot read tokenizer.json at \(jsonURL.path)")
            }
            tokenizer = try Tokenizer(tokenizerJSON: data)
        }
        let loadTime = loadClock.now - loadStart
        let text: String
        let source: String
        if let textFile {
            guard let data = try? Data(contentsOf: textFile) else { throw TokenizerError("cannot read \(textFile.path)") }
            text = String(decoding: data, as: UTF8.self)
            source = textFile.path
        } else {
            text = makeText()
            source = "generated mixed text (prose, code, numbers, CJK, emoji; deterministic)"
        }
        let bytes = Double(text.utf8.count)

        var ours: [Int] = []
        var best = Double.infinity
        for _ in 0..<max(1, runs) {
            let clock = ContinuousClock()
            let start = clock.now
            ours = tokenizer.encode(text, addSpecialTokens: false)
            let d = clock.now - start
            best = min(best, Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
        }
        let oursMBs = bytes / best / 1e6

        var lines = [String]()
        lines.append("tokenizer: \(jsonURL.path)")
        lines.append("text:      \(Int(bytes)) bytes, \(source)")
        lines.append("load:      \(loadTime.components.seconds * 1000 + loadTime.components.attoseconds / 1_000_000_000_000_000) ms (Swift, tokenizer.json parse + tables)")
        lines.append("timing:    single thread, encode(add_special_tokens=false) of the whole text, best of \(max(1, runs))")
        lines.append("")
        lines.append(pad("implementation", 42) + pad("MB/s", 10) + pad("ms", 10) + "tokens")
        lines.append(pad("MoETokenizer (Swift)", 42) + pad(String(format: "%.2f", oursMBs), 10)
                     + pad(String(format: "%.1f", best * 1000), 10) + "\(ours.count)")
        if let py = try python(jsonURL: jsonURL, text: text, runs: max(1, runs)) {
            let theirsMBs = bytes / py.seconds / 1e6
            lines.append(pad("HF tokenizers \(py.version) (Rust via Python)", 42) + pad(String(format: "%.2f", theirsMBs), 10)
                         + pad(String(format: "%.1f", py.seconds * 1000), 10) + "\(py.ids.count)")
            lines.append("")
            lines.append(String(format: "ratio ours/theirs: %.2fx (target >= 0.50x)", oursMBs / theirsMBs))
            let match = py.ids == ours
            var verdict = "ids identical: \(match ? "yes" : "NO")"
            if !match {
                let firstDiff = zip(py.ids, ours).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                    ?? min(py.ids.count, ours.count)
                verdict += " (first difference at token \(firstDiff))"
            }
            lines.append(verdict)
        } else {
            lines.append("")
            lines.append("python3 with `tokenizers` not available: no comparison")
        }
        return lines.joined(separator: "\n")
    }

    private static func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count)
    }

    // MARK: - Python reference

    private struct PythonResult {
        let seconds: Double
        let version: String
        let ids: [Int]
    }

    private static let script = """
    import json, sys, time
    import tokenizers
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8", newline="") as f:
        text = f.read()
    runs = int(sys.argv[4])
    best = float("inf")
    enc = None
    for _ in range(runs):
        t = time.perf_counter()
        enc = tok.encode(text, add_special_tokens=False)
        best = min(best, time.perf_counter() - t)
    with open(sys.argv[3], "w") as f:
        f.write(" ".join(map(str, enc.ids)))
    print(json.dumps({"seconds": best, "version": tokenizers.__version__}))
    """

    private static func runProcess(_ args: [String], env: [String: String]) -> (status: Int32, out: Data)? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.environment = env
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, out)
    }

    private static func python(jsonURL: URL, text: String, runs: Int) throws -> PythonResult? {
        var env = ProcessInfo.processInfo.environment
        env["RAYON_NUM_THREADS"] = "1"
        env["RAYON_RS_NUM_CPUS"] = "1"
        env["TOKENIZERS_PARALLELISM"] = "false"
        guard let probe = runProcess(["python3", "-c", "import tokenizers"], env: env), probe.status == 0 else {
            return nil
        }
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("moe-tok-bench-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let textURL = dir.appendingPathComponent("text.txt")
        let idsURL = dir.appendingPathComponent("ids.txt")
        try Data(text.utf8).write(to: textURL)
        guard let r = runProcess(["python3", "-c", script, jsonURL.path, textURL.path, idsURL.path, "\(runs)"], env: env),
              r.status == 0,
              let obj = try? JSONSerialization.jsonObject(with: r.out) as? [String: Any],
              let seconds = (obj["seconds"] as? NSNumber)?.doubleValue,
              let idsText = try? String(contentsOf: idsURL, encoding: .utf8) else {
            return nil
        }
        let ids = idsText.split(separator: " ").compactMap { Int($0) }
        return PythonResult(seconds: seconds, version: obj["version"] as? String ?? "?", ids: ids)
    }

    // MARK: - Text generation

    /// ~`targetBytes` of deterministic mixed text: English prose, Swift and
    /// Python code, numbers, JSON, CJK and emoji (incl. ZWJ sequences).
    static func makeText(targetBytes: Int = 1_000_000) -> String {
        let prose = [
            "The quick brown fox jumps over the lazy dog.",
            "It was the best of times, it was the worst of times.",
            "Speculative decoding lets a small draft model propose several tokens that a larger model verifies in one pass.",
            "Mixture-of-experts layers route each token to a few experts, so compute grows slower than parameters.",
            "She said: \"I'll be there by 5 o'clock, don't wait for me!\"",
            "In 2024, the company's revenue rose 12.5% to $1,299.99 million (up from $1.1B).",
            "Residual connections and RMSNorm keep activations well-scaled across dozens of layers.",
            "We're testing contractions: you've, they'd, it's, I'm, we'll, and can't.",
            "Tokenizers split text into pieces; byte-level BPE never needs an unknown token.",
            "Café au lait, naïve façade, jalapeño, Ångström, Straße, smörgåsbord.",
        ]
        let code = [
            "func add(_ a: Int, _ b: Int) -> Int {\n    return a + b\n}\n",
            "def softmax(x):\n    m = max(x)\n    e = [math.exp(v - m) for v in x]\n    return [v / sum(e) for v in e]\n",
            "for (i, layer) in layers.enumerated() where i % 2 == 0 {\n\tx = layer(x) // TODO: fuse\n}\n",
            "{\"name\": \"tiny\", \"layers\": [1, 2, 3], \"eps\": 1e-5, \"ok\": true}\n",
            "if (ptr != NULL && *ptr >= 0x7F) { return -EINVAL; }\r\n",
        ]
        let cjk = [
            "你好，世界！今天天气很好。", "日本語のテキストとカタカナ、ひらがな。", "안녕하세요 세계, 반갑습니다.",
            "机器学习模型需要大量的数据。",
        ]
        let emoji = ["😀", "🚀", "👍🏽", "🇺🇸", "👨‍👩‍👧‍👦", "🏳️‍🌈", "✨", "🤖"]
        var rng = SeededRNG(seed: 0x5EED_CAFE)
        var out = ""
        out.reserveCapacity(targetBytes + 256)
        var size = 0
        while size < targetBytes {
            let pick = rng.next() % 100
            let piece: String
            switch pick {
            case 0..<55: piece = prose[Int(rng.next() % UInt64(prose.count))] + " "
            case 55..<72: piece = code[Int(rng.next() % UInt64(code.count))]
            case 72..<82:
                piece = "\(rng.next() % 100_000) \(Double(rng.next() % 1_000_000) / 100) 0x\(String(rng.next() % 65536, radix: 16)) "
            case 82..<92: piece = cjk[Int(rng.next() % UInt64(cjk.count))]
            case 92..<97: piece = emoji[Int(rng.next() % UInt64(emoji.count))] + " "
            default: piece = "\n\n"
            }
            out += piece
            size += piece.utf8.count
        }
        return out
    }
}
