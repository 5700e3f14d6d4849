// Clicking a run folds or unfolds its batches; the page works without it (all unfolded).
document.querySelectorAll('tr.run').forEach(function(run){run.addEventListener('click',function(e){
if(e.target.closest('a'))return;var key=run.dataset.run;
document.querySelectorAll('tr.batch').forEach(function(b){if(b.dataset.run===key)b.classList.toggle('folded');});
});});
