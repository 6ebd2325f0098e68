"""Project tree: build, index, query and file intelligence (no Dagster)."""

from bridge_dagster.onextree.builder import (
    EXCLUDED_DIRECTORY_NAMES,
    EXCLUDED_DIRECTORY_SUFFIXES,
    build_tree,
    is_excluded_directory,
)
from bridge_dagster.onextree.engine import TreeEngine
from bridge_dagster.onextree.errors import (
    InvalidPath,
    InvalidQuery,
    NotADirectory,
    NotAFile,
    RootNotAllowed,
    RootNotFound,
    TreeError,
    TreeFileError,
)
from bridge_dagster.onextree.index import TreeIndex, normalize_path
from bridge_dagster.onextree.intelligence import (
    ContextAnalysis,
    Intelligence,
    RelatedFile,
    analyze_context,
    file_intelligence,
    infer_purpose,
    related_files,
)
from bridge_dagster.onextree.model import ProjectTree, TreeNode, TreeStatistics
from bridge_dagster.onextree.query import QUERY_TYPES, QueryResult, detect_query_type, query_tree
from bridge_dagster.onextree.roots import (
    find_project_root,
    resolve_allowed_file,
    resolve_allowed_root,
)
from bridge_dagster.onextree.storage import read_onextree, write_onextree

__all__ = [
    "EXCLUDED_DIRECTORY_NAMES",
    "EXCLUDED_DIRECTORY_SUFFIXES",
    "QUERY_TYPES",
    "ContextAnalysis",
    "Intelligence",
    "InvalidPath",
    "InvalidQuery",
    "NotADirectory",
    "NotAFile",
    "ProjectTree",
    "QueryResult",
    "RelatedFile",
    "RootNotAllowed",
    "RootNotFound",
    "TreeEngine",
    "TreeError",
    "TreeFileError",
    "TreeIndex",
    "TreeNode",
    "TreeStatistics",
    "analyze_context",
    "build_tree",
    "detect_query_type",
    "file_intelligence",
    "find_project_root",
    "infer_purpose",
    "is_excluded_directory",
    "normalize_path",
    "query_tree",
    "read_onextree",
    "related_files",
    "resolve_allowed_file",
    "resolve_allowed_root",
    "write_onextree",
]
