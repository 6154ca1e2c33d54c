/// A PostgreSQL transaction snapshot (`pg_snapshot`): which transactions' effects are visible.
///
/// Every transaction id below `xmin` has finished; ids from `xmax` on are treated as running (PostgreSQL sets
/// `xmax` one past the latest completed transaction, so newer running ones are not listed); ids in between are
/// finished unless listed in `inProgress`. A committed transaction is visible exactly when ``isVisible(_:)``;
/// the rule is the one of `pg_visible_in_snapshot`, so the feed can reason about visibility without a server.
public struct TransactionSnapshot: Sendable, Hashable, CustomStringConvertible {
    /// The oldest transaction still running when the snapshot was taken.
    public var xmin: UInt64
    /// One past the latest completed transaction when the snapshot was taken; later ids are invisible.
    public var xmax: UInt64
    /// Transactions between `xmin` and `xmax` still running, ascending.
    public var inProgress: [UInt64]

    /// Creates a snapshot; `inProgress` is sorted and deduplicated.
    public init(xmin: UInt64, xmax: UInt64, inProgress: [UInt64] = []) {
        self.xmin = xmin
        self.xmax = xmax
        self.inProgress = Array(Set(inProgress)).sorted()
    }

    /// Parses PostgreSQL's text form `xmin:xmax:xip1,xip2,…`.
    /// - Throws: `ProjectorError.invalidSnapshot` when the text is malformed or inconsistent.
    public init(text: String) throws(ProjectorError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let xmin = UInt64(parts[0]), let xmax = UInt64(parts[1]), xmin <= xmax else {
            throw ProjectorError(code: .invalidSnapshot, message: "malformed snapshot '\(text.prefix(80))'")
        }
        var running: [UInt64] = []
        if !parts[2].isEmpty {
            for item in parts[2].split(separator: ",", omittingEmptySubsequences: false) {
                guard let xid = UInt64(item), xid >= xmin, xid < xmax else {
                    throw ProjectorError(code: .invalidSnapshot, message: "malformed snapshot '\(text.prefix(80))'")
                }
                running.append(xid)
            }
        }
        self.init(xmin: xmin, xmax: xmax, inProgress: running)
    }

    /// Whether a committed transaction's effects are visible in this snapshot.
    public func isVisible(_ xid: UInt64) -> Bool {
        if xid < xmin { return true }
        if xid >= xmax { return false }
        return !inProgressContains(xid)
    }

    private func inProgressContains(_ xid: UInt64) -> Bool {
        var low = 0
        var high = inProgress.count
        while low < high {
            let middle = (low + high) / 2
            if inProgress[middle] < xid { low = middle + 1 } else { high = middle }
        }
        return low < inProgress.count && inProgress[low] == xid
    }

    /// The text form PostgreSQL reads back as `pg_snapshot`.
    public var description: String {
        "\(xmin):\(xmax):" + inProgress.map(String.init).joined(separator: ",")
    }
}
