// `sqlx::migrate!` embeds migrations/ when this crate compiles; without
// this line, a migration added to the folder alone would not rebuild it,
// and the binaries would go on without the new migration.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
