import Foundation
import MoEConfig
import MoEModel
import Testing
@testable import MoECluster

@Suite struct PlacementTests {
    @Test func contiguousBlocksNeedNotDivideEvenly() {
        #expect(ExpertPlacement.contiguous(experts: 8, workers: 3) == [0, 0, 0, 1, 1, 1, 2, 2])
        #expect(ExpertPlacement.contiguous(experts: 8, workers: 2) == [0, 0, 0, 0, 1, 1, 1, 1])
        #expect(ExpertPlacement.contiguous(experts: 8, workers: 7) == [0, 0, 1, 2, 3, 4, 5, 6])
        #expect(ExpertPlacement.contiguous(experts: 3, workers: 5) == [0, 1, 2])
        #expect(ExpertPlacement.roundRobin(experts: 5, workers: 2) == [0, 1, 0, 1, 0])
    }

    func spec() throws -> ModelSpec {
        try ModelFamilies.spec(configData: Data(#"{"model_type":"qwen3_moe","vocab_size":100,"hidden_size":64,"intermediate_size":48,"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,"num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":16,"mlp_only_layers":[1]}"#.utf8))
    }

    @Test func explicitMapIsHonouredPerLayerWithDefault() throws {
        var c = ClusterConfig()
        c.placementStrategy = .explicit
        c.placementMap = ["0": [2, 2, 1, 1], "default": [1, 2, 1, 2]]
        let p = try ExpertPlacement.make(c, spec: try spec(), workers: 2)
        #expect(p.worker == [[1, 1, 0, 0], [], [0, 1, 0, 1]])
        #expect(p.experts(of: 0).map { [$0.layer, $0.expert] } == [[0, 2], [0, 3], [2, 0], [2, 2]])
    }

    @Test func explicitMapErrorsNameTheProblem() throws {
        var c = ClusterConfig()
        c.placementStrategy = .explicit
        c.placementMap = ["0": [1, 1, 1]]
        #expect(throws: ClusterConfig.Invalid("placement.map.0 lists 3 experts; layer 0 has 4")) { try ExpertPlacement.make(c, spec: try spec(), workers: 2) }
        c.placementMap = ["0": [1, 3, 1, 1], "2": [1, 1, 1, 1]]
        #expect(throws: ClusterConfig.Invalid("placement.map names worker rank 3, but the job has worker ranks 1…2")) { try ExpertPlacement.make(c, spec: try spec(), workers: 2) }
        c.placementMap = ["0": [1, 1, 1, 1]]
        #expect(throws: ClusterConfig.Invalid("placement.map has no entry for MoE layer 2 (and no 'default')")) { try ExpertPlacement.make(c, spec: try spec(), workers: 2) }
        c.placementMap = ["1": [1, 1, 1, 1], "default": [1, 1, 1, 1]]
        #expect(throws: ClusterConfig.Invalid("placement.map.1 is not a mixture-of-experts layer of this model")) { try ExpertPlacement.make(c, spec: try spec(), workers: 2) }
    }

    @Test func rolesFollowRankSizeAndDraft() {
        #expect(Role.of(rank: 0, size: 1, hasDraft: false) == .coordinator)
        #expect(Role.of(rank: 2, size: 4, hasDraft: false) == .worker(index: 1))
        #expect(Role.of(rank: 3, size: 4, hasDraft: true) == .draft)
        #expect(Role.of(rank: 1, size: 2, hasDraft: true) == .worker(index: 0))   // too few ranks for a draft node
        #expect(Role.workerCount(size: 4, hasDraft: true) == 2)
    }
}

@Suite struct WireTests {
    @Test func aTokenTravelsOnceToEachWorkerHoldingOneOfItsExperts() {
        // 3 tokens, top-2; experts 0,1 on worker 0, experts 2,3 on worker 1.
        let r = Routing(tokens: 3, topK: 2, experts: [1, 0, 2, 0, 3, 2], weights: [0.6, 0.4, 0.7, 0.3, 0.5, 0.5])
        let plan = DispatchPlan(r, expertWorker: [0, 0, 1, 1], workers: 2)
        #expect(plan.units[0] == [.init(token: 0, experts: [1, 0], weights: [0.6, 0.4]), .init(token: 1, experts: [0], weights: [0.3])])
        #expect(plan.units[1] == [.init(token: 1, experts: [2], weights: [0.7]), .init(token: 2, experts: [3, 2], weights: [0.5, 0.5])])
    }

    /// A replicated expert's tokens alternate over its replicas (token t → replica t mod count), and a token whose
    /// two experts land on one worker still travels there once.
    @Test func aReplicatedExpertsTokensAlternateOverItsReplicas() {
        // 4 tokens, top-1, all to expert 0, which workers 0 and 1 both hold; expert 1 only on worker 1.
        let r = Routing(tokens: 4, topK: 1, experts: [0, 0, 0, 0], weights: [1, 1, 1, 1])
        let plan = DispatchPlan(r, replicas: [[0, 1], [1]], workers: 2)
        #expect(plan.units[0].map(\.token) == [0, 2] && plan.units[1].map(\.token) == [1, 3])
        // Token 1 (odd: replica on worker 1) with experts 0 and 1 makes one unit on worker 1 carrying both.
        let both = Routing(tokens: 2, topK: 2, experts: [0, 1, 0, 1], weights: [0.5, 0.5, 0.25, 0.75])
        let p2 = DispatchPlan(both, replicas: [[0, 1], [1]], workers: 2)
        #expect(p2.units[0] == [.init(token: 0, experts: [0], weights: [0.5])])
        #expect(p2.units[1] == [.init(token: 0, experts: [1], weights: [0.5]), .init(token: 1, experts: [0, 1], weights: [0.25, 0.75])])
    }

    @Test func bf16RowsHalveTheBytesAndStayClose() {
        let f = WireFormat(hidden: 5, topK: 2, bf16: true)
        #expect(f.rowBytes == 10 && f.unitBytes == 26)
        let row: [Float] = [1, -2.5, 3.14159, 1e-3, 100]
        var bytes = [UInt8](repeating: 0, count: f.rowBytes), back = [Float](repeating: 0, count: 5)
        bytes.withUnsafeMutableBytes { f.writeRow(row, to: $0.baseAddress!) }
        bytes.withUnsafeBytes { f.readRow($0.baseAddress!, to: &back) }
        for (a, b) in zip(row, back) { #expect(abs(a - b) <= abs(a) / 128) }
        #expect(WireFormat(hidden: 5, topK: 2, bf16: false).rowBytes == 20)
    }
}

@Suite struct ConfigFileTests {
    @Test func shippedConfigsParse() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for f in ["Config/cluster.yaml", "Config/local.yaml", "Config/multi-host.example.yaml"] {
            _ = try ClusterConfig.load(path: root.appendingPathComponent(f).path)
        }
        let c = try ClusterConfig.load(path: root.appendingPathComponent("Config/cluster.yaml").path)
        #expect(c == ClusterConfig())   // the file documents the defaults
    }

    /// model: ngram is prompt lookup: no draft model, so no draft node.
    @Test func servedModelNamesAndResponseRetentionAreRead() throws {
        #expect(try ClusterConfig.parse(yaml: "api: {served_model_name: mixtral}").servedModelNames == ["mixtral"])
        #expect(try ClusterConfig.parse(yaml: "api: {served_model_name: [mixtral, gpt-4o]}").servedModelNames == ["mixtral", "gpt-4o"])
        #expect(try ClusterConfig.parse(yaml: "api: {port: 1}").servedModelNames.isEmpty)
        #expect(try ClusterConfig.parse(yaml: "api: {response_retention_days: 0}").responseRetentionDays == 0)
        #expect(try ClusterConfig.parse(yaml: "api: {port: 1}").responseRetentionDays == 30)
        for bad in ["api: {served_model_name: []}", "api: {served_model_name: ['']}", "api: {served_model_name: {a: 1}}",
                    "api: {response_retention_days: -1}", "api: {response_retention_days: 1.5}"] {
            #expect(throws: ClusterConfig.Invalid.self, "\(bad)") { try ClusterConfig.parse(yaml: bad) }
        }
    }

    @Test func ngramDraftSettingsParseAndBadLengthsAreErrors() throws {
        let c = try ClusterConfig.parse(yaml: "draft: {model: ngram, ngram_max: 5, ngram_min: 1}")
        #expect(c.draftIsNGram && !c.hasDraftModel && c.ngramMax == 5 && c.ngramMin == 1)
        #expect(throws: ClusterConfig.Invalid("draft.ngram_min and draft.ngram_max must satisfy 1 <= ngram_min <= ngram_max <= 64 (got 3, 2)")) {
            try ClusterConfig.parse(yaml: "draft: {model: ngram, ngram_max: 2, ngram_min: 3}").validate()
        }
    }

    /// hf_overrides as a YAML mapping (or the flag's JSON text) and max_model_len; bad ones named before loading.
    @Test func hfOverridesAndMaxModelLenParseAndBadOnesAreErrors() throws {
        let c = try ClusterConfig.parse(yaml: "hf_overrides: {rope_scaling: {rope_type: yarn, factor: 4.0, original_max_position_embeddings: 32768}}\nmax_model_len: 65536")
        let o = try JSONSerialization.jsonObject(with: Data(c.hfOverrides!.utf8)) as? [String: [String: Any]]
        #expect(o?["rope_scaling"]?["rope_type"] as? String == "yarn" && o?["rope_scaling"]?["factor"] as? Double == 4)
        #expect(c.maxModelLen == 65536)
        #expect(try ClusterConfig.parse(yaml: #"hf_overrides: '{"sliding_window": 64}'"#).hfOverrides == #"{"sliding_window": 64}"#)
        #expect(throws: ClusterConfig.Invalid("hf_overrides must be a JSON object of config.json keys (got [1])")) {
            var bad = ClusterConfig()
            bad.hfOverrides = "[1]"
            try bad.validate()
        }
        #expect(throws: ClusterConfig.Invalid("max_model_len must be positive")) {
            try ClusterConfig.parse(yaml: "max_model_len: 0").validate()
        }
    }

    @Test func microBatchSettingsParseAndOutOfRangeValuesAreErrors() throws {
        let c = try ClusterConfig.parse(yaml: "mpi: {micro_batches: 3, micro_batch_min_tokens: 64}")
        #expect(c.microBatches == 3 && c.microBatchMinTokens == 64)
        #expect(ClusterConfig().microBatches == 2 && ClusterConfig().microBatchMinTokens == 256)
        #expect(throws: ClusterConfig.Invalid("mpi.micro_batches must be from 1 to 8 (got 0)")) {
            try ClusterConfig.parse(yaml: "mpi: {micro_batches: 0}").validate()
        }
        #expect(throws: ClusterConfig.Invalid("mpi.micro_batch_min_tokens must be positive")) {
            try ClusterConfig.parse(yaml: "mpi: {micro_batch_min_tokens: 0}").validate()
        }
    }

    @Test func unknownKeysAndBadValuesAreClearErrors() {
        #expect(throws: ClusterConfig.Invalid("c: unknown key 'wire_dtyp' (known: api, attention, draft, experts, hf_overrides, kv_cache, max_model_len, model, mpi, placement, router, scheduler, speculative, stats, threads, wire_dtype)")) {
            try ClusterConfig.parse(yaml: "wire_dtyp: bf16", source: "c")
        }
        #expect(throws: ClusterConfig.Invalid("c: placement.strategy must be one of contiguous, round_robin, explicit (got 'random')")) {
            try ClusterConfig.parse(yaml: "placement:\n  strategy: random", source: "c")
        }
        #expect(throws: ClusterConfig.Invalid("mpi.timeout_seconds must be positive")) {
            try ClusterConfig.parse(yaml: "mpi:\n  timeout_seconds: 0", source: "c")
        }
        #expect(throws: ClusterConfig.Invalid("c: mpi.timeout_seconds must be a number")) {
            try ClusterConfig.parse(yaml: "mpi:\n  timeout_seconds: soon", source: "c")
        }
        #expect(throws: ClusterConfig.Invalid("placement.strategy is explicit but placement.map is empty")) {
            try ClusterConfig.parse(yaml: "placement:\n  strategy: explicit", source: "c")
        }
    }

    @Test func weightFormatsAreChosenPerRole() throws {
        let c = try ClusterConfig.parse(yaml: "experts:\n  dtype: int4\nattention:\n  dtype: bf16\ndraft:\n  dtype: int8\n")
        #expect(c.expertsDType == .int4 && c.attentionDType == .bf16 && c.draftDType == .int8)
        #expect(try ClusterConfig.parse(yaml: "draft:\n  quantize: int4\n").draftDType == .int4)
        #expect(try ClusterConfig.parse(yaml: "experts:\n  dtype: q8_0\n").expertsDType == .int8)   // llama.cpp's name
        #expect(try ClusterConfig.parse(yaml: "experts:\n  dtype: auto\n").expertsDType == nil && ClusterConfig().expertsDType == nil)
        #expect(throws: ClusterConfig.Invalid("experts.dtype must be auto or one of f32, f16, bf16, int8, int4, mxfp4, int4z (got 'q5_k')")) {
            try ClusterConfig.parse(yaml: "experts:\n  dtype: q5_k", source: "c")
        }
        #expect(throws: ClusterConfig.Invalid("c: unknown key 'attention.format' (known: attention.dtype)")) {
            try ClusterConfig.parse(yaml: "attention:\n  format: f16", source: "c")
        }
    }

    @Test func explicitMapParsesLayerKeys() throws {
        let c = try ClusterConfig.parse(yaml: "placement:\n  strategy: explicit\n  map:\n    0: [1, 2]\n    default: [2, 1]\n")
        #expect(c.placementMap == ["0": [1, 2], "default": [2, 1]])
    }
}

@Suite struct DraftWireTests {
    /// A draft start message carries what the draft samples with, penalties and logit bias included.
    @Test func draftStartMessageCarriesTheSamplingParameters() {
        let params = SamplingParams(temperature: 0.7, topK: 5, topP: 0.9, seed: 11, repetitionPenalty: 1.2, frequencyPenalty: -0.5,
                                    presencePenalty: 0.25, logitBias: [3: -100, 7: 2.5], minP: 0.05)
        let m = StartMessage(StartMessage(seq: 4, k: 3, params: params, prompt: [1, 2, 3]).encode())
        #expect(m.seq == 4 && m.k == 3 && m.prompt == [1, 2, 3] && m.params == params)
        // vLLM's allowed_token_ids and bad_words too; an empty allowed list is not the same as none.
        for (allowed, bad) in [([Int32]([5, 9]), [[Int32]]([[4], [2, 3, 8]])), ([], nil), (nil, [[1, 1]])] {
            var p = params
            p.allowedTokens = allowed
            p.badWords = bad
            #expect(StartMessage(StartMessage(seq: 1, k: 2, params: p, prompt: [7]).encode()).params == p)
        }
    }
}
