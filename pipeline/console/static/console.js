// Keyboard shortcuts on a case page: a approve, r reject, e escalate (not while typing in a field).
document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const button = document.querySelector(`[data-shortcut="${event.key}"]`);
  if (button) { event.preventDefault(); button.click(); }
});
