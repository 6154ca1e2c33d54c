extension SearchQuery {
    /// Parses the textual query language used by the command line and tests, e.g.
    /// `[("city", "Lisbon,Porto"), ("price", "100000..500000"), ("sort", "price_asc"), ("limit", "20")]`.
    /// - Throws: ``QueryError`` with ``QueryError/Code/unknownField`` for an unknown key, or the code of the
    ///   first invalid value.
    public init(parameters: [(key: String, value: String)]) throws(QueryError) { fatalError("skeleton") }
}
