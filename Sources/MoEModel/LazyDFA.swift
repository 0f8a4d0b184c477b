import Foundation

/// A byte automaton (a regex's NFA, a GBNF grammar's stacks) determinised as it is used: each node met gets an id and
/// its 256 successors are found once, so feeding a byte is a table lookup and the token mask's tens of thousands of
/// tokens a step cost little more than their bytes. Shared by one request's steps; the lock makes it safe to share
/// wider.
public final class LazyDFA<Node: Hashable & Sendable>: @unchecked Sendable, Equatable {
    private let step: @Sendable (Node, UInt8) -> Node?
    private let acceptsNode: @Sendable (Node) -> Bool
    private let closedNode: @Sendable (Node) -> Bool
    private let initial: Node
    private var nodes: [Node] = []
    private var ids: [Node: Int32] = [:]
    /// nodes.count × 256 successors: −2 not yet found, −1 nothing goes on.
    private var table: [Int32] = []
    private var accepting: [Bool] = []
    private var closedNodes: [Bool] = []
    private let lock = NSLock()
    /// Beyond this many nodes, successors are still found but no longer stored.
    static var maxStates: Int { 50_000 }

    /// `step` gives the node after a byte (nil: nothing goes on); `accepts`, whether the text may end at a node;
    /// `closed`, whether nothing may follow it.
    public init(start: Node, step: @escaping @Sendable (Node, UInt8) -> Node?, accepts: @escaping @Sendable (Node) -> Bool,
                closed: @escaping @Sendable (Node) -> Bool) {
        initial = start
        self.step = step
        acceptsNode = accepts
        closedNode = closed
    }

    public static func == (a: LazyDFA, b: LazyDFA) -> Bool { a === b }

    public var start: Int32 { lock.withLock { intern(initial) } }

    private func intern(_ node: Node) -> Int32 {
        if let id = ids[node] { return id }
        let id = Int32(nodes.count)
        if nodes.count < Self.maxStates {
            ids[node] = id
            table += repeatElement(-2, count: 256)
        }
        nodes.append(node)
        accepting.append(acceptsNode(node))
        closedNodes.append(closedNode(node))
        return id
    }

    /// The state after byte b (−1: nothing goes on).
    public func next(_ s: Int32, _ b: UInt8) -> Int32 { lock.withLock { advance(s, b) } }

    /// The state after `bytes` from s, under one lock (nil: nothing goes on).
    public func after(_ s: Int32, _ bytes: [UInt8]) -> Int32? {
        lock.withLock {
            var x = s
            for b in bytes where x >= 0 { x = advance(x, b) }
            return x >= 0 ? x : nil
        }
    }

    /// The state after `bytes` from s for each of many byte strings, under one lock: the token mask's inner loop.
    public func run(from s: Int32, _ strings: [[UInt8]], _ body: (Int, Int32) -> Void) {
        lock.withLock {
            for (i, bytes) in strings.enumerated() {
                var x = s
                for b in bytes where x >= 0 { x = advance(x, b) }
                body(i, x)
            }
        }
    }

    private func advance(_ s: Int32, _ b: UInt8) -> Int32 {
        let k = Int(s) * 256 + Int(b)
        if k < table.count, table[k] != -2 { return table[k] }
        let n = step(nodes[Int(s)], b).map(intern) ?? -1
        if k < table.count { table[k] = n }
        return n
    }

    public func accepts(_ s: Int32) -> Bool { lock.withLock { accepting[Int(s)] } }
    public func closed(_ s: Int32) -> Bool { lock.withLock { closedNodes[Int(s)] } }
}
